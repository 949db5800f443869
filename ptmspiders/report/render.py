"""``metrics.json``, CSV tables and a self-contained ``index.html`` (figures as base64 PNG)."""

from __future__ import annotations

import base64
import functools
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from ptmspiders.report.metrics import Result
from ptmspiders.safe_output import write_csv

TITLES: dict[str, str] = {
    "verified_orgs": "1. Verified organisations",
    "signed_commits": "2. Signed commits",
    "model_index": "3. Machine-readable claims (model-index)",
    "cards": "4. Documentation: model cards",
    "missing_fields": "5. Missing attributes",
    "dependencies": "6. Dependencies: base models and datasets",
    "popularity": "7. Popularity",
    "maintainers_reach": "8. Maintainers' reach",
    "unsafe_serialisation": "9. Unsafe serialisation",
    "cross_hub": "10. Cross-hub repositories",
}


def public(value: Any) -> Any:
    """The result without ``_``-prefixed bulk keys (what metrics.json holds)."""
    if isinstance(value, dict):
        return {k: public(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list):
        return [public(v) for v in value]
    return value


def write_json(path: Path, metrics: Result, meta: dict[str, Any]) -> None:
    path.write_text(json.dumps({"meta": meta, **public(metrics)}, indent=2, ensure_ascii=False,
                               sort_keys=False) + "\n")


def _fmt_share(entry: Any) -> str:
    if not isinstance(entry, dict) or "numerator" not in entry:
        return ""
    value = entry.get("value")
    pct = "n/a" if value is None else f"{value:.2%}"
    return f"{pct} ({entry['numerator']:,} of {entry['denominator']:,})"


# CSV tables -------------------------------------------------------------------------------
def tables(m: Result) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """File name -> (header, rows) for every CSV table."""
    def share_row(label: Sequence[Any], e: dict[str, Any]) -> list[Any]:
        return [*label, e["numerator"], e["denominator"], e["value"]]

    out: dict[str, tuple[list[str], list[list[Any]]]] = {}
    v = m["verified_orgs"]
    out["verified_orgs.csv"] = (["hub", "verified", "organisations", "share"],
                                [share_row(["all"], v)] + [share_row([h], e) for h, e in
                                                           v["per_hub"].items()])
    s = m["signed_commits"]
    out["signed_commits.csv"] = (["signature", "commits"],
                                 [[k, n] for k, n in s["statuses"].items()])
    mi = m["model_index"]
    out["model_index_by_task.csv"] = (["task", "with_model_index", "models", "share"],
                                      [share_row(["all"], mi)] + [share_row([t], e) for t, e in
                                                                  mi["per_task"].items()])
    c = m["cards"]
    out["cards.csv"] = (["hub", "with_card", "models", "share"],
                        [share_row(["all"], c)] + [share_row([h], e) for h, e in
                                                   c["per_hub"].items()])
    mf = m["missing_fields"]
    rows = [["all", f, e["numerator"], e["denominator"], e["value"]]
            for f, e in mf["fields"].items()]
    for hub, t in mf["per_hub"].items():
        rows += [[hub, f, e["numerator"], e["denominator"], e["value"]]
                 for f, e in t["fields"].items()]
    out["missing_fields.csv"] = (["hub", "field", "missing", "models", "share"], rows)
    d = m["dependencies"]
    out["dependencies_base_models.csv"] = (["base_model", "models"],
                                           [[r["name"], r["models"]] for r in d["base_models"]])
    out["dependencies_datasets.csv"] = (["dataset", "models"],
                                        [[r["name"], r["models"]] for r in d["datasets"]])
    p = m["popularity"]
    out["popularity.csv"] = (["hub", "measure", "models", "total", "top1_share", "top10_share",
                              "gini"],
                             [[h, e["measure"], e["models"], e["total"], e["top1"]["value"],
                               e["top10"]["value"], e["gini"]] for h, e in p["per_hub"].items()])
    r = m["maintainers_reach"]
    out["maintainers.csv"] = (["owner", "hub", "models", "downloads"],
                              [[o["owner"], o["hub"], o["models"], o["downloads"]]
                               for o in r.get("_all_owners", r["top_by_downloads"])])
    u = m["unsafe_serialisation"]
    out["unsafe_serialisation.csv"] = (
        ["hub", "pickle_only", "with_weights", "share"],
        [share_row(["all"], u), share_row(["popular"], u["popular"])]
        + [share_row([h], e) for h, e in u["per_hub"].items()])
    ps = u["package_scan"]
    agree = ps["agreement"]
    out["package_scan.csv"] = (
        ["measure", "models", "of"],
        [["packages scanned", ps["packages"], None],
         ["unsafe (our scan)", ps["unsafe"]["numerator"], ps["unsafe"]["denominator"]],
         ["unsafe or suspicious (our scan)", ps["flagged"]["numerator"],
          ps["flagged"]["denominator"]],
         ["package scan with errors", ps["with_errors"], ps["packages"]]]
        + [[f"agreement with the hub: {k.replace('_', ' ')}", agree[k], agree["models"]]
           for k in ("agree_unsafe", "agree_safe", "only_ours", "only_hub")]
        + [["scanned by both, ours inconclusive", agree["inconclusive"], None]])
    x = m["cross_hub"]
    out["cross_hub.csv"] = (["repo", "hubs", "models"],
                            [[e["repo"], " ".join(e["hubs"]), " ".join(e["models"])]
                             for e in x["shared_repositories"]])
    return out


def write_csvs(out: Path, metrics: Result) -> list[str]:
    """Every table as a CSV file, through :func:`write_csv` (hub text cannot start a
    spreadsheet formula)."""
    names = []
    for name, (header, rows) in tables(metrics).items():
        write_csv(out / name, header, rows)
        names.append(name)
    return names


# Figures --------------------------------------------------------------------------------------
def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def figures(m: Result) -> dict[str, str]:
    """Measurement key -> base64 PNG. Every figure renders, with a note when data is absent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def empty(ax: Any, text: str = "no data in the store") -> None:
        ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])

    figs: dict[str, str] = {}

    fig, ax = plt.subplots(figsize=(6, 3.5))
    per_hub = m["popularity"]["per_hub"]
    drawn = False
    for hub, e in per_hub.items():
        values = [v for v in e.get("_values", []) if v > 0]
        if values:
            ax.loglog(range(1, len(values) + 1), values, marker=".", label=f"{hub} "
                      f"({e['measure']})")
            drawn = True
    if drawn:
        ax.set_xlabel("rank")
        ax.set_ylabel("downloads / likes")
        ax.legend(fontsize=8)
    else:
        empty(ax)
    ax.set_title("Popularity, log-log")
    figs["popularity"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 5))
    fields = m["missing_fields"]["fields"]
    if m["missing_fields"]["denominator"]:
        names = list(fields)
        ax.barh(names, [fields[f]["value"] or 0 for f in names], color="#c44e52")
        ax.set_xlim(0, 1)
        ax.invert_yaxis()
        ax.set_xlabel("share of models missing the field")
    else:
        empty(ax)
    ax.set_title("Missing attributes (all hubs)")
    figs["missing_fields"] = _png(fig)

    fig, ax = plt.subplots(figsize=(5, 3))
    statuses = m["signed_commits"]["statuses"]
    if sum(statuses.values()):
        ax.bar(list(statuses), list(statuses.values()),
               color=["#55a868", "#c44e52", "#8c8c8c", "#dd8452"])
        ax.set_ylabel("commits")
    else:
        empty(ax)
    ax.set_title("Commit signatures")
    figs["signed_commits"] = _png(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    owners = m["maintainers_reach"].get("_all_owners", [])
    reach = sorted(o["downloads"] for o in owners)
    if reach and sum(reach):
        total, cum, xs, ys = sum(reach), 0, [0.0], [0.0]
        for i, value in enumerate(reach, start=1):
            cum += value
            xs.append(i / len(reach))
            ys.append(cum / total)
        ax.plot(xs, ys, label="owners' downloads reached")
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="equal reach")
        ax.set_xlabel("share of owners")
        ax.set_ylabel("share of downloads")
        ax.legend(fontsize=8)
    else:
        empty(ax)
    ax.set_title("Maintainers' reach (Lorenz curve)")
    figs["maintainers_reach"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    base = m["dependencies"]["base_models"][:10]
    if base:
        ax.barh([b["name"] for b in base], [b["models"] for b in base], color="#4c72b0")
        ax.invert_yaxis()
        ax.set_xlabel("models")
    else:
        empty(ax)
    ax.set_title("Most used base models")
    figs["dependencies"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    formats = m["unsafe_serialisation"]["formats"]
    if formats:
        ax.bar(list(formats), list(formats.values()),
               color=["#c44e52" if f == "pickle" else "#4c72b0" for f in formats])
        ax.set_ylabel("models with the format")
        ax.tick_params(axis="x", rotation=30)
    else:
        empty(ax)
    ax.set_title("Weight serialisation formats")
    figs["unsafe_serialisation"] = _png(fig)
    return figs


# HTML -----------------------------------------------------------------------------------------
ROW_LIMIT = 30  # rows of a table shown on the page; the CSV beside it has them all
# The CSV tables shown under each measurement.
CSV_OF: dict[str, list[str]] = {
    "verified_orgs": ["verified_orgs.csv"], "signed_commits": ["signed_commits.csv"],
    "model_index": ["model_index_by_task.csv"], "cards": ["cards.csv"],
    "missing_fields": ["missing_fields.csv"],
    "dependencies": ["dependencies_base_models.csv", "dependencies_datasets.csv"],
    "popularity": ["popularity.csv"], "maintainers_reach": ["maintainers.csv"],
    "unsafe_serialisation": ["unsafe_serialisation.csv", "package_scan.csv"],
    "cross_hub": ["cross_hub.csv"],
}


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _thousands(value: int) -> str:
    return f"{value:,}"


@functools.cache
def environment() -> jinja2.Environment:
    """The page's templates (``report/templates``, package data) with autoescape on, so a
    model id or owner name from a hub is always text on the page, never markup."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("ptmspiders.report", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["cell"] = _cell
    env.filters["thousands"] = _thousands
    return env


def _headline(key: str, e: Result) -> str:
    """The measurement's main numbers, in words."""
    if key == "signed_commits":
        org = e["verified_orgs_signing"]
        return (f"Commits signed: {_fmt_share(e['commits'])}. Models with a signed commit: "
                f"{_fmt_share(e['models'])}. Verified organisations that sign: {org['value']} "
                f"of {org['denominator']}.")
    if key == "missing_fields":
        return f"Models: {e['denominator']:,}."
    if key == "dependencies":
        return (f"With a base model: {_fmt_share(e['with_base_model'])}; with a dataset: "
                f"{_fmt_share(e['with_dataset'])}.")
    if key == "popularity":
        return " ".join(f"{h}: top 1% hold {_fmt_share(p['top1'])} of {p['measure']}, top 10% "
                        f"{_fmt_share(p['top10'])}, Gini {_cell(p['gini'])}."
                        for h, p in e["per_hub"].items()) or "No hub has downloads or likes."
    if key == "maintainers_reach":
        return (f"Owners: {e['owners']:,}; Gini of downloads reached {_cell(e['gini_downloads'])}"
                f", of models owned {_cell(e['gini_models'])}; top owners reach "
                f"{_fmt_share(e['top_owners_share'])} of downloads.")
    if key == "unsafe_serialisation":
        ps = e["package_scan"]
        if ps["packages"]:
            a = ps["agreement"]
            ours = (f"Our scan of {ps['packages']:,} downloaded packages: unsafe "
                    f"{_fmt_share(ps['unsafe'])}, unsafe or suspicious "
                    f"{_fmt_share(ps['flagged'])}; against the hub's flags on {a['models']:,} "
                    f"models scanned by both: both flag {a['agree_unsafe']:,}, neither "
                    f"{a['agree_safe']:,}, only ours {a['only_ours']:,}, only the hub's "
                    f"{a['only_hub']:,}.")
        else:
            ours = "Our scan: no downloaded packages are stored, so there is no measure."
        return (f"Pickle-only: {_fmt_share(e)}; among popular models: "
                f"{_fmt_share(e['popular'])}; flagged by the hub's scan: "
                f"{_fmt_share(e['hub_scan_unsafe'])}. {ours}")
    if key == "cards":
        return (f"With a card: {_fmt_share(e)}; popular models without one: "
                f"{_fmt_share(e['popular_without_card'])}.")
    return _fmt_share(e)


def write_html(path: Path, metrics: Result, meta: dict[str, Any], figs: dict[str, str],
               csvs: dict[str, tuple[list[str], list[list[Any]]]]) -> None:
    """``index.html`` from ``templates/index.html.j2``: every measurement with its definition,
    headline, figure and the first rows of its tables."""
    sections = []
    for key, title in TITLES.items():
        e = metrics[key]
        shown = []
        for name in CSV_OF[key]:
            header, rows = csvs[name]
            shown.append({"name": name, "header": header, "rows": rows[:ROW_LIMIT],
                          "more": len(rows) > ROW_LIMIT})
        sections.append({"key": key, "title": title, "definition": str(e.get("definition", "")),
                         "headline": _headline(key, e), "documents": e.get("documents", 0),
                         "figure": figs.get(key), "tables": shown})
    page = environment().get_template("index.html.j2").render(meta=meta, sections=sections)
    path.write_text(page, encoding="utf-8")
