"""The ten measurements of ``ptm report`` as pure functions over stored documents.

Every function takes plain iterables of documents (what ``Store.find`` yields on SQLite and on
MongoDB alike), so both stores give the same numbers. Each result says its definition, how many
documents it read (``documents``) and, for shares, ``value``/``numerator``/``denominator``;
breakdowns (per hub, per task) sit beside them. Keys starting with ``_`` hold bulk data for the
figures and CSV tables and are left out of ``metrics.json``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ptmspiders.parsers.hf_repo import PICKLE_FORMATS, weight_formats

Doc = Mapping[str, Any]
Result = dict[str, Any]

TOP_SHARE = 0.10  # "popular" = the top 10% of a hub's models by downloads
TOP_N = 20
# The schema fields whose absence the missing-attribute study counts; ``card`` and
# ``model_index`` are missing unless the card exists / carries a model-index.
MISSING_FIELDS: tuple[str, ...] = (
    "owner", "title", "description", "tasks", "libraries", "architectures", "tags",
    "datasets", "base_models", "papers", "github_repos", "license", "downloads", "likes",
    "created_at", "last_modified", "latest_commit_sha", "parameters", "card", "model_index",
)


def share(numerator: int, denominator: int, definition: str) -> Result:
    return {"value": numerator / denominator if denominator else None,
            "numerator": numerator, "denominator": denominator, "definition": definition}


def gini(values: Sequence[float]) -> float | None:
    """Gini coefficient of non-negative values: 0 = equal, towards 1 = concentrated."""
    xs = sorted(v for v in values if v is not None)
    n, total = len(xs), sum(xs)
    if n == 0 or total == 0:
        return None
    weighted = sum(i * x for i, x in enumerate(xs, start=1))
    return (2 * weighted) / (n * total) - (n + 1) / n


def top_k(n: int, fraction: float = TOP_SHARE) -> int:
    """How many models make the top ``fraction`` of ``n`` (at least one when n > 0)."""
    return min(n, max(1, math.ceil(n * fraction))) if n else 0


def popular(models: Iterable[Doc], fraction: float = TOP_SHARE) -> list[Doc]:
    """The top ``fraction`` by downloads of each hub, among models with a download count;
    ties are broken by ``_id`` so every store picks the same models."""
    by_hub: dict[str, list[Doc]] = defaultdict(list)
    for m in models:
        if isinstance(m.get("downloads"), int):
            by_hub[str(m.get("hub"))].append(m)
    out: list[Doc] = []
    for docs in by_hub.values():
        docs.sort(key=lambda d: (-d["downloads"], d["_id"]))
        out.extend(docs[: top_k(len(docs), fraction)])
    return out


def is_missing(doc: Doc, field: str) -> bool:
    card_data = doc.get("card")
    card: Mapping[str, Any] = card_data if isinstance(card_data, Mapping) else {}
    if field == "card":
        return card.get("present") is not True
    if field == "model_index":
        return card.get("has_model_index") is not True
    return doc.get(field) in (None, "", [], {})


def _by_hub(docs: Iterable[Doc]) -> dict[str, list[Doc]]:
    out: dict[str, list[Doc]] = defaultdict(list)
    for d in docs:
        out[str(d.get("hub"))].append(d)
    return dict(sorted(out.items()))


# 1 ---------------------------------------------------------------------------------------------
def verified_orgs(owners: Sequence[Doc]) -> Result:
    definition = ("Organisations whose hub marks them verified, among organisations whose "
                  "verification status is known (owners of type org, is_verified not null).")

    def one(docs: Iterable[Doc]) -> Result:
        known = [d for d in docs if d.get("type") == "org" and d.get("is_verified") is not None]
        return share(sum(1 for d in known if d["is_verified"] is True), len(known), definition)

    result = one(owners)
    result["documents"] = len(owners)
    result["per_hub"] = {hub: one(docs) for hub, docs in _by_hub(owners).items()
                         if any(d.get("type") == "org" for d in docs)}
    return result


# 2 ---------------------------------------------------------------------------------------------
def signed_commits(commits: Sequence[Doc], models: Sequence[Doc],
                   owners: Sequence[Doc]) -> Result:
    known = [c for c in commits if c.get("signed") is not None]
    signed = [c for c in known if c["signed"] is True]
    models_known = {c.get("model") for c in known}
    models_signed = {c.get("model") for c in signed}
    model_owner = {m["_id"]: f"{m.get('hub')}:{m.get('owner')}" for m in models
                   if m.get("owner")}
    verified = {o["_id"]: o.get("name") for o in owners
                if o.get("type") == "org" and o.get("is_verified") is True}
    signing_orgs = sorted({str(verified[model_owner[m]]) for m in models_signed
                           if m in model_owner and model_owner[m] in verified})
    statuses = Counter(str(c.get("signature")) for c in commits)
    return {
        "definition": ("Commits of model repositories and their signatures. A commit is signed "
                       "when it carries any signature (good, bad, or not checkable); commits "
                       "read by the api method (signed unknown) are left out of both shares."),
        "documents": len(commits),
        "commits": share(len(signed), len(known),
                         "Signed commits among commits whose signing is known."),
        "models": share(len(models_signed), len(models_known),
                        "Models with at least one signed commit, among models with at least "
                        "one commit whose signing is known."),
        "verified_orgs_signing": {
            "value": len(signing_orgs), "orgs": signing_orgs, "denominator": len(verified),
            "definition": "Verified organisations owning a model with at least one signed "
                          "commit (denominator: verified organisations in the store)."},
        "statuses": {s: statuses.get(s, 0) for s in ("good", "bad", "unsigned", "unknown")},
        "methods": dict(sorted(Counter(str(c.get("signature_method")) for c in commits)
                               .items())),
    }


# 3 ---------------------------------------------------------------------------------------------
def model_index(models: Sequence[Doc]) -> Result:
    definition = ("Hugging Face models whose card carries a model-index (machine-readable "
                  "evaluation claims), among all Hugging Face models; per task, a model counts "
                  "under each of its tasks ('(none)' without one).")
    hf = [m for m in models if m.get("hub") == "huggingface"]
    result = share(sum(1 for m in hf if not is_missing(m, "model_index")), len(hf), definition)
    result["documents"] = len(hf)
    tasks: dict[str, list[Doc]] = defaultdict(list)
    for m in hf:
        for task in m.get("tasks") or ["(none)"]:
            tasks[task].append(m)
    result["per_task"] = {
        t: share(sum(1 for m in docs if not is_missing(m, "model_index")), len(docs),
                 definition) for t, docs in sorted(tasks.items())}
    return result


# 4 ---------------------------------------------------------------------------------------------
def cards(models: Sequence[Doc]) -> Result:
    definition = "Models with a model card, among models whose card presence is known."
    known = [m for m in models if isinstance(m.get("card"), dict)
             and m["card"].get("present") is not None]
    result = share(sum(1 for m in known if m["card"]["present"] is True), len(known), definition)
    result["documents"] = len(models)
    result["per_hub"] = {hub: share(sum(1 for m in docs if m["card"]["present"] is True),
                                    len(docs), definition)
                         for hub, docs in _by_hub(known).items()}
    top = popular(known)
    without = sorted(m["_id"] for m in top if m["card"]["present"] is False)
    result["popular_without_card"] = {
        **share(len(without), len(top),
                f"Among the top {TOP_SHARE:.0%} of each hub's models by downloads (card "
                "presence known), those without a card."),
        "models": without}
    read = [m for m in known if m["card"]["present"] is True and "length" in m["card"]]
    result["states"] = {
        fact: share(sum(1 for m in read if m["card"].get(f"states_{fact}") is True), len(read),
                    f"Cards that state {fact} (front matter key or a section with content), "
                    "among cards that were fetched and read.")
        for fact in ("license", "datasets", "limitations", "evaluation")}
    return result


# 5 ---------------------------------------------------------------------------------------------
def missing_fields(models: Sequence[Doc]) -> Result:
    definition = ("For each field, the models where it is missing (null, empty text, empty "
                  "list; card: no card; model_index: no model-index), among all models.")

    def table(docs: Sequence[Doc]) -> dict[str, Result]:
        return {f: share(sum(1 for d in docs if is_missing(d, f)), len(docs), definition)
                for f in MISSING_FIELDS}

    return {"definition": definition, "documents": len(models), "denominator": len(models),
            "fields": table(models),
            "per_hub": {hub: {"denominator": len(docs), "fields": table(docs)}
                        for hub, docs in _by_hub(models).items()}}


# 6 ---------------------------------------------------------------------------------------------
def dependencies(models: Sequence[Doc]) -> Result:
    base: Counter[str] = Counter()
    data: Counter[str] = Counter()
    for m in models:
        base.update(set(m.get("base_models") or []))
        data.update(set(m.get("datasets") or []))
    with_base = sum(1 for m in models if m.get("base_models"))
    with_data = sum(1 for m in models if m.get("datasets"))

    def top(counter: Counter[str]) -> list[dict[str, Any]]:
        ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_N]
        return [{"name": k, "models": v} for k, v in ranked]

    return {
        "definition": ("Models per base model and per dataset (from card data and tags), the "
                       f"top {TOP_N} of each; a model counts once per distinct name."),
        "documents": len(models),
        "with_base_model": share(with_base, len(models),
                                 "Models that name at least one base model."),
        "with_dataset": share(with_data, len(models), "Models that name at least one dataset."),
        "base_models": top(base),
        "datasets": top(data),
    }


# 7 ---------------------------------------------------------------------------------------------
def popularity(models: Sequence[Doc]) -> Result:
    per_hub: dict[str, Result] = {}
    for hub, docs in _by_hub(models).items():
        measure = next((f for f in ("downloads", "likes")
                        if any(isinstance(d.get(f), int) for d in docs)), None)
        if measure is None:
            continue
        values = sorted((d[measure] for d in docs if isinstance(d.get(measure), int)),
                        reverse=True)
        total = sum(values)
        entry: Result = {"measure": measure, "models": len(values), "total": total,
                         "gini": gini(values), "_values": values}
        for label, fraction in (("top1", 0.01), ("top10", 0.10)):
            k = top_k(len(values), fraction)
            entry[label] = share(sum(values[:k]), total,
                                 f"Share of all {measure} held by the top {fraction:.0%} of "
                                 f"models ({k} of {len(values)}).")
        per_hub[hub] = entry
    return {"definition": ("Distribution of downloads (or likes/stars where a hub has no "
                           "downloads) per hub: the share held by the top 1% and 10% of models "
                           "and the Gini coefficient, over models with a count."),
            "documents": len(models), "per_hub": per_hub}


# 8 ---------------------------------------------------------------------------------------------
def maintainers_graph(models: Iterable[Doc]) -> Any:
    """owner -> model edges (a networkx DiGraph); model nodes carry ``downloads`` (unknown
    counts as 0)."""
    import networkx as nx  # only the report needs it: ``ptm`` itself starts fast

    graph = nx.DiGraph()
    for m in models:
        if not m.get("owner"):
            continue
        owner = f"{m.get('hub')}:{m['owner']}"
        graph.add_node(owner, kind="owner", hub=m.get("hub"), name=m["owner"])
        downloads = m["downloads"] if isinstance(m.get("downloads"), int) else 0
        graph.add_node(m["_id"], kind="model", downloads=downloads)
        graph.add_edge(owner, m["_id"])
    return graph


def maintainers_reach(models: Sequence[Doc]) -> Result:
    graph = maintainers_graph(models)
    owners = []
    for node, data in graph.nodes(data=True):
        if data["kind"] != "owner":
            continue
        reached = [graph.nodes[m]["downloads"] for m in graph.successors(node)]
        owners.append({"owner": data["name"], "hub": data["hub"], "models": len(reached),
                       "downloads": sum(reached)})
    total = sum(o["downloads"] for o in owners)
    by_downloads = sorted(owners, key=lambda o: (-o["downloads"], o["hub"], o["owner"]))
    k = top_k(len(owners))
    return {
        "definition": ("The graph owner -> models -> downloads: each owner reaches the "
                       "downloads of its models. Concentration is the Gini coefficient over "
                       "owners; models without an owner are left out."),
        "documents": sum(1 for _, d in graph.nodes(data=True) if d["kind"] == "model"),
        "owners": len(owners),
        "gini_downloads": gini([o["downloads"] for o in owners]),
        "gini_models": gini([o["models"] for o in owners]),
        "top_owners_share": share(sum(o["downloads"] for o in by_downloads[:k]), total,
                                  f"Share of downloads reached by the top {TOP_SHARE:.0%} of "
                                  f"owners ({k} of {len(owners)})."),
        "top_by_models": sorted(owners, key=lambda o: (-o["models"], o["hub"],
                                                       o["owner"]))[:TOP_N],
        "top_by_downloads": by_downloads[:TOP_N],
        "_all_owners": by_downloads,
    }


# 9 ---------------------------------------------------------------------------------------------
def model_formats(doc: Doc) -> list[str]:
    return weight_formats(f["path"] for f in doc.get("files") or []
                          if isinstance(f, dict) and isinstance(f.get("path"), str))


def pickle_only(doc: Doc) -> bool:
    formats = model_formats(doc)
    return bool(formats) and set(formats) <= PICKLE_FORMATS


def unsafe_serialisation(models: Sequence[Doc], packages: Sequence[Doc] = ()) -> Result:
    definition = ("Models whose weight files exist only in pickle-based formats (.bin, .pt, "
                  ".pth, .ckpt, .pkl, ...), among models with at least one weight file.")
    with_weights = [m for m in models if model_formats(m)]

    def one(docs: Sequence[Doc]) -> Result:
        return share(sum(1 for m in docs if pickle_only(m)), len(docs), definition)

    result = one(with_weights)
    result["documents"] = len(models)
    result["per_hub"] = {hub: one(docs) for hub, docs in _by_hub(with_weights).items()}
    top = popular(with_weights)
    result["popular"] = one(top)
    result["popular"]["definition"] = (f"The same, among the top {TOP_SHARE:.0%} of each hub's "
                                       "models with weights, by downloads.")
    formats: Counter[str] = Counter()
    for m in with_weights:
        formats.update(model_formats(m))
    result["formats"] = dict(sorted(formats.items()))
    scanned = [m for m in models if isinstance(m.get("risk"), dict)
               and (m["risk"].get("scanned_files") or 0) > 0]
    result["hub_scan_unsafe"] = share(
        sum(1 for m in scanned if m["risk"].get("unsafe_files")), len(scanned),
        "Models with a file the hub's security scan flags, among models with scanned files.")
    result["package_scan"] = package_scan(models, packages)
    return result


def package_scan(models: Sequence[Doc], packages: Sequence[Doc]) -> Result:
    """Our own scan of the downloaded packages (``packages`` collection, ``scan`` summary per
    model, see ptmspiders/packages/scan.py) beside the hub's scan flags, and where they agree.

    Ours counts as flagging a model like the hub's flag does: an unsafe or a suspicious file.
    A model whose package scan only has errors is inconclusive and left out of the agreement.
    """
    hub_flag = {m["_id"]: bool(m["risk"].get("unsafe_files")) for m in models
                if isinstance(m.get("risk"), dict) and (m["risk"].get("scanned_files") or 0) > 0}
    ids = {m["_id"] for m in models}
    scans = {p["_id"]: p["scan"] for p in packages
             if p.get("_id") in ids and isinstance(p.get("scan"), dict)
             and (p["scan"].get("scanned") or 0) > 0}
    unsafe = {i for i, s in scans.items() if (s.get("unsafe") or 0) > 0}
    flagged = unsafe | {i for i, s in scans.items() if (s.get("suspicious") or 0) > 0}
    erred = {i for i, s in scans.items() if (s.get("errors") or 0) > 0}
    both = sorted(set(scans) & set(hub_flag))
    conclusive = [i for i in both if i in flagged or i not in erred]
    result = {
        "packages": len(scans),
        "unsafe": share(len(unsafe), len(scans),
                        "Models whose downloaded package has a pickle file importing code "
                        "execution (our scan), among models with a scanned package."),
        "flagged": share(len(flagged), len(scans),
                         "Models whose package has an unsafe or suspicious pickle file (our "
                         "scan, in the sense of the hub's flags), among models with a scanned "
                         "package."),
        "with_errors": len(erred),
        "agreement": {
            "definition": "Models scanned both by the hub and by us (ours conclusive): both "
                          "flag them, neither does, only ours does, only the hub's does.",
            "models": len(conclusive),
            "agree_unsafe": sum(1 for i in conclusive if i in flagged and hub_flag[i]),
            "agree_safe": sum(1 for i in conclusive if i not in flagged and not hub_flag[i]),
            "only_ours": sum(1 for i in conclusive if i in flagged and not hub_flag[i]),
            "only_hub": sum(1 for i in conclusive if i not in flagged and hub_flag[i]),
            "inconclusive": len(both) - len(conclusive),
        },
    }
    if not scans:
        result["note"] = ("No scanned model packages are stored for these models: our scan "
                          "has nothing to measure (not 0%).")
    return result


# 10 --------------------------------------------------------------------------------------------
def cross_hub(models: Sequence[Doc]) -> Result:
    hubs_of: dict[str, set[str]] = defaultdict(set)
    models_of: dict[str, list[str]] = defaultdict(list)
    for m in models:
        for repo in set(m.get("github_repos") or []):
            hubs_of[repo].add(str(m.get("hub")))
            models_of[repo].append(m["_id"])
    shared = {r for r, hubs in hubs_of.items() if len(hubs) > 1}
    with_repo = [m for m in models if m.get("github_repos")]
    linked = sum(1 for m in with_repo if shared & set(m["github_repos"]))
    result = share(linked, len(with_repo),
                   "Models whose GitHub repository also appears on another hub, among models "
                   "that name a GitHub repository.")
    result["documents"] = len(models)
    result["repositories"] = len(hubs_of)
    result["shared_repositories"] = [
        {"repo": r, "hubs": sorted(hubs_of[r]), "models": sorted(models_of[r])}
        for r in sorted(shared, key=lambda r: (-len(hubs_of[r]), r))]
    return result


def compute(models: Sequence[Doc], owners: Sequence[Doc], commits: Sequence[Doc],
            packages: Sequence[Doc] = ()) -> Result:
    """All ten measurements, keyed as ``metrics.json`` has them."""
    return {
        "verified_orgs": verified_orgs(owners),
        "signed_commits": signed_commits(commits, models, owners),
        "model_index": model_index(models),
        "cards": cards(models),
        "missing_fields": missing_fields(models),
        "dependencies": dependencies(models),
        "popularity": popularity(models),
        "maintainers_reach": maintainers_reach(models),
        "unsafe_serialisation": unsafe_serialisation(models, packages),
        "cross_hub": cross_hub(models),
    }
