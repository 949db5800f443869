"""The synthetic hub-scale catalogue: deterministic, in the Hub's list format, and parseable into
schema-valid items (so a benchmark on it measures the real code path)."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import orjson
import pytest

from ptmspiders.hub_answers import parse_link_header
from ptmspiders.items import to_doc
from ptmspiders.parsers import huggingface as hf
from ptmspiders.pipelines.normalize import normalize_model
from ptmspiders.pipelines.validate import schema_error
from tests.mockhub import MockHub, MockRequest
from tests.mockhub.huggingface import list_models as fixture_list_models
from tests.mockhub.synthetic import (
    ALL_KEYS,
    SyntheticCatalogue,
    enable,
    owner_name,
)

EXPAND = list(hf.DEFAULT_EXPAND)


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_same_seed_same_bytes_other_seed_other_models():
    a, b, c = SyntheticCatalogue(5000), SyntheticCatalogue(5000), SyntheticCatalogue(5000, seed=1)
    assert a.page(2000, 1000, EXPAND) == b.page(2000, 1000, EXPAND)
    assert a.page(2000, 1000, EXPAND) != c.page(2000, 1000, EXPAND)
    assert a[1234] == b[1234]


def test_entries_are_unique_and_project_expand_like_the_hub():
    cat = SyntheticCatalogue(3000)
    page = orjson.loads(cat.page(0, 1000, ["author", "sha"]))
    assert len(page) == 1000
    assert all(set(m) == {"_id", "id", "author", "sha"} for m in page)
    ids = [m["id"] for m in cat[0:3000]]
    assert len(set(ids)) == 3000
    assert all(re.fullmatch(r"[0-9a-f]{24}", m["_id"]) for m in page)
    assert all(re.fullmatch(r"[0-9a-f]{40}", m["sha"]) for m in page)
    assert all(m["id"].split("/")[0] == m["author"] for m in page)


def test_slices_match_the_fast_page_renderer():
    """``hub.hf`` as a Sequence (the fixture mock's path) and the fast path agree."""
    cat = SyntheticCatalogue(1500)
    fast = orjson.loads(cat.page(1000, 1000, EXPAND))
    slow = [{k: m[k] for k in ("_id", "id", *EXPAND) if k in m} for m in cat[1000:2000]]
    assert fast == slow
    assert len(fast) == 500


def test_entries_parse_into_schema_valid_items():
    cat = SyntheticCatalogue(4000)
    body = cat.page(0, 1000, EXPAND)
    items, rejects = hf.parse_models_page(body, endpoint="https://huggingface.co",
                                          source_url=None, seen_at="2026-01-01T00:00:00.000Z")
    assert rejects == []
    assert len(items) == 1000
    for item in items:
        normalize_model(item)
        assert schema_error("model", to_doc(item)) is None, item._id
    # The variety the normaliser and the studies need is really there.
    assert len({i.license for i in items}) >= 10
    assert len({lib for i in items for lib in i.libraries}) >= 8
    assert sum(1 for i in items if i.papers) > 200
    assert sum(1 for i in items if i.github_repos) > 10
    assert sum(1 for i in items if i.base_models) > 300
    assert sum(1 for i in items if i.created_at is None) > 10  # the 2022-03-02 placeholder
    assert {i.gated_mode for i in items} >= {None, "auto", "manual"}
    assert sum(1 for i in items if i.parameters) > 300


def test_sizes_and_shapes_match_real_hub_bodies(hubdata: Path):
    """Per-model size within the range of the recorded bodies, same JSON types per property."""
    real = [json.loads(p.read_text()) for p in
            sorted((hubdata / "huggingface" / "model_info").glob("*.body.json"))]
    real = [r for r in real if "siblings" in r]
    assert len(real) >= 4
    real_sizes = sorted(len(orjson.dumps({k: v for k, v in r.items() if k in EXPAND}))
                        for r in real)
    cat = SyntheticCatalogue(2000)
    page = orjson.loads(cat.page(0, 1000, EXPAND))
    mean = sum(len(orjson.dumps(m)) for m in page) / len(page)
    assert real_sizes[0] <= mean <= real_sizes[-1]
    assert max(len(orjson.dumps(m)) for m in page) > real_sizes[-2]  # a long tail
    types: dict[str, set[str]] = {}
    for r in real:
        for k, v in r.items():
            if v is not None:
                types.setdefault(k, set()).add(type(v).__name__)
    checked = Counter()
    for m in page:
        for k, v in m.items():
            if k in types and v is not None:
                assert type(v).__name__ in types[k], (k, v)
                checked[k] += 1
    assert set(checked) >= {"cardData", "config", "siblings", "tags", "safetensors", "sha",
                            "downloads", "createdAt", "lastModified", "gated"}
    sib = next(m["siblings"] for m in page if m.get("siblings"))
    assert set(sib[0]) == set(real[0]["siblings"][0])


def test_owners_follow_a_long_tail_and_have_overviews():
    cat = SyntheticCatalogue(20_000)
    owners = Counter(cat.owner_of(i) for i in range(cat.n))
    # About one owner per five models, most with one model, the largest with a few percent.
    assert 0.15 * cat.n < len(owners) < 0.3 * cat.n
    assert sum(1 for c in owners.values() if c == 1) > 0.4 * len(owners)
    assert 0.005 * cat.n < max(owners.values()) < 0.05 * cat.n
    orgs = users = 0
    for rank in list(owners)[:500]:
        name = owner_name(rank)
        assert cat.owner_rank(name) == rank
        if name in cat.organizations:
            orgs += 1
            assert cat.organizations[name]["name"] == name
            assert name not in cat.users
        else:
            users += 1
            assert cat.users[name]["type"] == "user"
    assert orgs > 0 and users > orgs
    assert cat.owner_rank("nobody-here") is None
    assert cat.owner_rank(owner_name(cat.owner_ranks + 5)) is None


def test_user_overviews_name_organisations_that_exist():
    cat = SyntheticCatalogue(20_000)
    users = [r for r in range(cat.owner_ranks) if owner_name(r) in cat.users][:2000]
    members = 0
    for rank in users:
        orgs = cat.users[owner_name(rank)]["orgs"]
        assert len(orgs) <= 3
        assert len({o["name"] for o in orgs}) == len(orgs)
        for org in orgs:
            assert set(org) == {"name", "fullname", "avatarUrl"}
            overview = cat.organizations[org["name"]]
            assert {k: overview[k] for k in org} == org  # as the organisation describes itself
        members += bool(orgs)
    assert 0.2 * len(users) < members < 0.4 * len(users)  # the mock's assumption: 30%


def test_by_id_round_trips_and_rejects_unknown_ids():
    cat = SyntheticCatalogue(1000)
    repo_id = cat[777]["id"]
    assert cat.by_id(repo_id) == cat[777]
    assert cat.by_id(repo_id.rsplit("-", 1)[0] + "-zz") is None
    assert cat.by_id("someone/else") is None
    with pytest.raises(IndexError):
        cat[1000]


def test_bad_size_is_a_clear_error():
    with pytest.raises(ValueError, match="synthetic catalogue size"):
        SyntheticCatalogue(-1)


def test_served_pages_follow_link_cursors_and_count_requests():
    hub = MockHub()
    cat = enable(hub, 2500)
    with hub:
        url = hf.list_url(hub.url, expand=EXPAND)
        seen: list[str] = []
        pages = 0
        while url:
            status, headers, body = get(url)
            assert status == 200
            seen += [m["id"] for m in orjson.loads(body)]
            pages += 1
            url = parse_link_header(headers.get("Link")).get("next")
        assert pages == 3
        assert seen == [cat.repo_id(i) for i in range(2500)]
        name = owner_name(cat.owner_of(0))
        kind = "organizations" if name in cat.organizations else "users"
        status, _, body = get(f"{hub.url}/api/{kind}/{name}/overview")
        assert status == 200 and orjson.loads(body)["name"] == name
        status, _, body = get(f"{hub.url}/api/models?search=bert")
        assert status == 400 and b"unsupported: search" in body
        status, _, body = get(f"{hub.url}/api/models?cursor=!!!")
        assert status == 400
        status, _, body = get(f"{hub.url}/api/models/{seen[5]}")
        assert status == 200 and orjson.loads(body)["id"] == seen[5]
        _, _, body = get(f"{hub.url}/_mock/counts")
        counts = orjson.loads(body)
        assert counts["list"] == 5 and counts["detail"] == 1
        assert counts.get("org", 0) + counts.get("user", 0) == 1
        assert len(hub.log) <= 1000


def test_fixture_mock_handler_also_pages_the_synthetic_sequence():
    """``hub.hf.select`` + slicing is all the fixture mock's list handler needs."""
    hub = MockHub()
    enable(hub, 1200)
    req = MockRequest("GET", "/api/models", {"limit": ["1000"], "expand": ["author"]},
                      {"host": "127.0.0.1:1"}, b"", "/api/models?limit=1000&expand=author")
    resp = fixture_list_models(hub, req, re.match("", ""))  # type: ignore[arg-type]
    assert resp.status == 200
    assert len(json.loads(resp.body)) == 1000
    assert "cursor=" in (resp.header("Link") or "")
    assert set(ALL_KEYS) >= set(json.loads(resp.body)[0]) - {"_id", "id"}


def test_a_body_kept_by_a_checker_is_decoded_once_for_its_consumer():
    """The retry middleware checks list pages with ``keep=True``; the spider's decode of the
    same body object then reuses that result instead of decoding megabytes again."""
    from ptmspiders.hub_answers import BadResponse, load_json

    body = SyntheticCatalogue(10).page(0, 10, ["author"])
    checked = load_json(body, list, keep=True)
    assert load_json(body, list) is checked  # handed over once...
    again = load_json(body, list)
    assert again == checked and again is not checked  # ...then decoded anew
    load_json(body, list, keep=True)
    with pytest.raises(BadResponse, match="wrong_shape"):
        load_json(body, dict)  # the consumer's shape check still applies
    twin = bytes(bytearray(body))
    load_json(body, list, keep=True)
    assert load_json(twin, list) is not load_json(body, list)


def _owner_response(request, status, body):
    from scrapy.http import TextResponse

    return TextResponse(request.url, body=orjson.dumps(body), status=status, request=request,
                        encoding="utf-8")


def test_owner_lookups_ask_first_for_the_kind_found_more_often():
    """On a hub where most owners are users, the org-first guess would cost two calls for
    most owners; after users dominate, users are asked first and orgs fall back."""
    from scrapy.utils.test import get_crawler

    from ptmspiders.items import OwnerItem
    from ptmspiders.spiders.hf_models import HfModelsSpider

    crawler = get_crawler(HfModelsSpider, {"HF_ENDPOINT": "http://hub.test",
                                           "PTM_STORE_ENABLED": False})
    crawler.stats.open_spider()
    s = HfModelsSpider.from_crawler(crawler, owners="full")
    calls = 0

    def resolve(name, kind):
        nonlocal calls
        (req,) = s.owner_requests(name)
        assert req.dont_filter  # the spider dedupes owners, not the dupefilter
        while True:
            calls += 1
            asked = "org" if "/api/organizations/" in req.url else "user"
            if asked == kind:
                body = {"name": name, "type": "user"} if kind == "user" else {"name": name}
                (item,) = s.parse_owner(_owner_response(req, 200, body))
                return item
            out = list(s.parse_owner(_owner_response(req, 404, {"error": "not found"})))
            if isinstance(out[0], OwnerItem):
                return out[0]
            (req,) = out

    assert resolve("u0", "user").type == "user"  # tie: org first, then user (2 calls)
    assert calls == 2
    for i in range(1, 6):
        assert resolve(f"u{i}", "user").type == "user"
    assert calls == 2 + 5  # users first now: one call each
    assert resolve("big-org", "org").type == "org"  # user 404, then org
    assert calls == 2 + 5 + 2
    gone = resolve("gone", "nobody")
    assert gone.type == "unknown" and calls == 2 + 5 + 2 + 2  # both kinds tried, once each


def _id_time(oid: str) -> str:
    import datetime as dt
    return dt.datetime.fromtimestamp(int(oid[:8], 16), dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_ids_carry_the_creation_time_as_recorded_hub_bodies_do(hubdata: Path):
    """The fact the synthetic ids copy: an ObjectId's timestamp is the repo's ``createdAt``."""
    bodies = [json.loads(p.read_text()) for p in
              sorted((hubdata / "huggingface" / "model_info").glob("*.body.json"))]
    bodies = [b for b in bodies if "_id" in b and "createdAt" in b]
    assert len(bodies) >= 4
    assert all(_id_time(b["_id"]) == b["createdAt"] for b in bodies)


@pytest.mark.parametrize("n", [1000, 30_000])
def test_listed_in_the_hubs_default_order(n: int):
    """Trending models first (score descending), then ``_id`` ascending: creation order."""
    cat = SyntheticCatalogue(n)
    models = [orjson.loads(cat.render(i, ("trendingScore", "createdAt", "lastModified")))
              for i in range(n)]
    assert all(_id_time(m["_id"]) == m["createdAt"] for m in models)
    assert all(m["lastModified"] >= m["createdAt"] for m in models
               if not m["createdAt"].startswith("2022-03-02"))
    scores = [m["trendingScore"] for m in models]
    assert scores == sorted(scores, reverse=True)
    assert 0 < cat.trending < n and scores[cat.trending - 1] > 0 == scores[cat.trending]
    rest = [m["_id"] for m in models[cat.trending:]]
    assert rest == sorted(rest) and len(set(rest)) == len(rest)
    placeholders = [m for m in models if m["createdAt"].startswith("2022-03-02T23:29:0")]
    assert len(placeholders) == cat.legacy
    assert {m["_id"][:8] for m in placeholders} == {"621ffdc0", "621ffdc1"}


def test_downloads_are_heavy_tailed():
    """Most models are not downloaded in a month; a few are downloaded millions of times."""
    cat = SyntheticCatalogue(200_000)
    downloads = [orjson.loads(cat.render(i, ("downloads",)))["downloads"]
                 for i in range(0, 200_000, 7)]
    share = lambda cond: sum(1 for d in downloads if cond(d)) / len(downloads)  # noqa: E731
    assert 0.5 < share(lambda d: d == 0) < 0.6
    assert 0.6 < share(lambda d: d < 10) < 0.95
    assert 0.003 < share(lambda d: d > 1000) < 0.02
    assert max(downloads) > 100_000
