"""hf_models callbacks on hand-made responses: arguments, paging, owners, renames, errors."""

import asyncio
import json
from pathlib import Path

import pytest
from scrapy import Request
from scrapy.http import TextResponse

from ptmspiders.args import ArgumentError
from ptmspiders.config import SettingsError, owners_mode
from ptmspiders.items import ModelItem, OwnerItem
from ptmspiders.spiders.hf_models import HfModelsSpider
from tests.conftest import ptm_crawler

FIX = Path(__file__).parent / "fixtures" / "huggingface"
EP = "http://hub.test"


def spider(**kwargs):
    """owners=full unless told: most of these tests are about the full mode's kind guesses."""
    crawler = ptm_crawler(HfModelsSpider, {"HF_ENDPOINT": EP, "PTM_STORE_ENABLED": False})
    crawler.stats.open_spider()
    s = HfModelsSpider.from_crawler(crawler, **{"owners": "full", **kwargs})
    return s


def response(url, body, status=200, headers=None, meta=None):
    req = Request(url, meta=meta or {})
    return TextResponse(url, body=body if isinstance(body, bytes) else json.dumps(body).encode(),
                        status=status, headers=headers or {}, request=req, encoding="utf-8")


def models():
    return json.loads((FIX / "models.json").read_text())


async def first_requests(s):
    return [r async for r in s.start()]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"limit": "ten"}, "-a limit='ten': Input should be a valid integer"),
    ({"limit": "0"}, "-a limit='0': Input should be greater than 0"),
    ({"sort": "stars"}, "-a sort='stars': expected one of createdAt, downloads,"),
    ({"expand": "sha,nonsense"}, "-a expand='sha,nonsense': unknown properties nonsense"),
    ({"owners": "maybe"}, "-a owners='maybe': expected orgs, full or off"),
    ({"full": "perhaps"}, "-a full='perhaps': Input should be a valid boolean"),
    ({"limt": "10"}, "-a limt='10': unknown argument \\(did you mean limit\\?"),
    ({"ids": "a/b", "author": "c"}, "-a ids cannot go with -a author"),
])
def test_bad_arguments_fail_at_start(kwargs, message):
    with pytest.raises(ArgumentError, match=f"^hf_models: {message}") as caught:
        spider(**kwargs)
    assert "\n" not in str(caught.value)


def test_start_request_carries_the_arguments():
    s = spider(author="acme-ai", search="bert", filter="en,fill-mask", sort="downloads",
               limit="20")
    (req,) = asyncio.run(first_requests(s))
    assert req.url.startswith(f"{EP}/api/models?limit=20&search=bert&author=acme-ai"
                              "&filter=en&filter=fill-mask&sort=downloads&direction=-1&expand=")


def test_list_page_yields_items_owner_requests_and_next_page():
    s = spider()
    page = models()[:4]
    out = list(s.parse_list(response(f"{EP}/api/models?limit=4", page, headers={
        "Link": '<http://hub.test/api/models?limit=4&cursor=abc>; rel="next"'})))
    items = [o for o in out if isinstance(o, ModelItem)]
    reqs = [o for o in out if isinstance(o, Request)]
    assert [i.hub_id for i in items] == [m["id"] for m in page]
    owner_urls = [r.url for r in reqs if "/overview" in r.url]
    assert owner_urls == [f"{EP}/api/organizations/acme-ai/overview",
                          f"{EP}/api/organizations/lumen-labs/overview"]
    assert [r.url for r in reqs if "cursor" in r.url] == [f"{EP}/api/models?limit=4&cursor=abc"]


def test_last_page_has_no_follow_up_and_limit_stops_early():
    s = spider(limit="2")
    out = list(s.parse_list(response(f"{EP}/api/models", models()[:5], headers={
        "Link": '<http://hub.test/api/models?cursor=abc>; rel="next"'})))
    assert len([o for o in out if isinstance(o, ModelItem)]) == 2
    assert not [o for o in out if isinstance(o, Request) and "cursor" in o.url]


def test_bad_list_page_is_counted_and_marks_the_crawl_incomplete():
    s = spider()
    out = list(s.parse_list(response(f"{EP}/api/models", b"<html>oops</html>")))
    assert out == []
    stats = s.crawler.stats.get_stats()
    assert stats["ptm/bad_response/html_instead_of_json"] == 1
    assert stats["ptm/incomplete"] is True


def test_owner_404_falls_back_to_user_then_unknown():
    s = spider()
    meta = {"ptm_owner": "jdoe", "ptm_owner_kind": "org"}
    (req,) = list(s.parse_owner(response(f"{EP}/api/organizations/jdoe/overview",
                                         {"error": "x"}, status=404, meta=meta)))
    assert req.url == f"{EP}/api/users/jdoe/overview"
    user = {"type": "user", "name": "jdoe", "isPro": False, "numModels": 3}
    (owner,) = list(s.parse_owner(response(req.url, user,
                                           meta={"ptm_owner": "jdoe", "ptm_owner_kind": "user"})))
    assert isinstance(owner, OwnerItem) and owner.type == "user" and owner.num_models == 3
    (unknown,) = list(s.parse_owner(response(req.url, {"error": "x"}, status=404,
                                             meta={"ptm_owner": "gone",
                                                   "ptm_owner_kind": "user"})))
    assert unknown.type == "unknown" and unknown._id == "huggingface:gone"


def test_each_owner_is_requested_once():
    s = spider()
    first = list(s.owner_requests("acme-ai"))
    again = list(s.owner_requests("acme-ai"))
    assert len(first) == 1 and again == []


@pytest.mark.parametrize(("value", "mode"), [
    (None, "orgs"), ("", "off"), (True, "orgs"), ("1", "orgs"), ("true", "orgs"),
    ("FULL", "full"), (" orgs ", "orgs"), ("off", "off"), ("0", "off"), (False, "off"),
    ("no", "off"), ("on", "orgs"), ("yes", "orgs"),
])
def test_owners_modes_and_the_booleans_they_replace(value, mode):
    assert owners_mode(value) == mode
    if value is not None:  # not given: PTM_HF_OWNERS decides
        assert HfModelsSpider.parse_args({"owners": value}).owners == mode


@pytest.mark.parametrize(("setting", "argument", "mode"), [
    ("full", None, "full"), ("False", None, "off"), (True, None, "orgs"),
    ("off", "orgs", "orgs"),  # the argument wins
])
def test_the_owners_setting_applies_unless_the_argument_says_otherwise(setting, argument, mode):
    crawler = ptm_crawler(HfModelsSpider, {"HF_ENDPOINT": EP, "PTM_STORE_ENABLED": False,
                                           "PTM_HF_OWNERS": setting})
    s = HfModelsSpider.from_crawler(crawler, **({"owners": argument} if argument else {}))
    asyncio.run(first_requests(s))
    assert (s.owners, s.collect_owners) == (mode, mode != "off")


def test_a_users_404_resumed_under_orgs_still_ends_unknown():
    """A full crawl's look-up, queued in a JOBDIR at the users' endpoint and answered 404 after
    a restart with owners=orgs: the organisations' 404 that follows is no sign of a user."""
    s = spider(owners="orgs")
    (req,) = s.parse_owner(response(f"{EP}/api/users/gone/overview", {"error": "x"},
                                    status=404, meta={"ptm_owner": "gone",
                                                      "ptm_owner_kind": "user",
                                                      "ptm_owner_tried": ()}))
    assert req.url == f"{EP}/api/organizations/gone/overview"
    (owner,) = s.parse_owner(response(req.url, {"error": "x"}, status=404, meta=req.meta))
    assert owner.type == "unknown"
    assert s.crawler.stats.get_value("ptm/owners/users_without_overview") is None


def test_a_bad_owners_setting_fails_at_start():
    with pytest.raises(SettingsError, match=r"^PTM_HF_OWNERS='users': expected orgs, full"):
        ptm_crawler(HfModelsSpider, {"HF_ENDPOINT": EP, "PTM_STORE_ENABLED": False,
                                     "PTM_HF_OWNERS": "users"})


def test_owners_orgs_asks_each_owner_once_and_takes_a_404_for_a_user():
    s = spider(owners="orgs")
    s.owner_kinds_found = {"user": 50}  # the full mode would now ask users first
    (req,) = s.owner_requests("jdoe")
    assert req.url == f"{EP}/api/organizations/jdoe/overview"
    (user,) = s.parse_owner(response(req.url, {"error": "x"}, status=404, meta=req.meta))
    assert isinstance(user, OwnerItem)
    assert (user._id, user.type, user.is_verified, user.is_pro) == (
        "huggingface:jdoe", "user", False, None)
    assert user.extra["overview"] == "skipped"
    assert user.crawl["source_url"] == req.url
    assert s.crawler.stats.get_value("ptm/owners/users_without_overview") == 1
    (req,) = s.owner_requests("acme-ai")
    acme = json.loads((FIX / "owners.json").read_text())["organizations"]["acme-ai"]
    (org,) = s.parse_owner(response(req.url, acme, meta=req.meta))
    assert (org.type, org.is_verified) == ("org", True)


def test_a_full_crawl_asks_users_stored_without_overview_as_users(tmp_path):
    from ptmspiders.stores import open_store

    uri = f"sqlite:///{tmp_path}/ptm.sqlite"
    store = open_store(uri)
    store.upsert("owners", [
        {"_id": "huggingface:jdoe", "hub": "huggingface", "name": "jdoe", "type": "user",
         "extra": {"overview": "skipped"}},
        {"_id": "huggingface:msmith", "hub": "huggingface", "name": "msmith", "type": "user"},
        {"_id": "huggingface:acme-ai", "hub": "huggingface", "name": "acme-ai", "type": "org"},
    ])
    store.close()

    def started(**kwargs):
        crawler = ptm_crawler(HfModelsSpider, {"HF_ENDPOINT": EP, "PTM_STORE_URI": uri})
        crawler.stats.open_spider()
        s = HfModelsSpider.from_crawler(crawler, **kwargs)
        asyncio.run(first_requests(s))
        return s

    s = started(owners="full")
    (req,) = s.owner_requests("jdoe")
    assert req.url == f"{EP}/api/users/jdoe/overview"
    assert req.meta["ptm_owner_tried"] == ("org",)  # the orgs crawl's 404: not asked again
    (gone,) = s.parse_owner(response(req.url, {"error": "x"}, status=404, meta=req.meta))
    assert gone.type == "unknown"  # a deleted account, no third call
    assert list(s.owner_requests("msmith")) == list(s.owner_requests("acme-ai")) == []
    # An orgs crawl (the default) leaves them be.
    assert list(started().owner_requests("jdoe")) == []


def test_organisations_named_by_a_user_overview_are_asked_as_organisations():
    s = spider()
    s.owner_kinds_found = {"user": 5}  # users dominate: unknown owners are asked as users
    (queued,) = s.owner_requests("acme-ai")
    assert queued.url == f"{EP}/api/users/acme-ai/overview"
    assert s.reaim(queued) is None  # nothing learnt yet: sent as queued
    jdoe = json.loads((FIX / "owners.json").read_text())["users"]["jdoe"]
    (owner,) = s.parse_owner(response(f"{EP}/api/users/jdoe/overview", jdoe,
                                      meta={"ptm_owner": "jdoe", "ptm_owner_kind": "user"}))
    assert owner.orgs == ["acme-ai", "reading-club"]
    # The look-up queued before jdoe's overview came goes to the organisations' endpoint...
    reaimed = s.reaim(queued)
    assert reaimed is not None and reaimed.url == f"{EP}/api/organizations/acme-ai/overview"
    assert reaimed.meta["ptm_owner_kind"] == "org" and reaimed.meta["ptm_owner_tried"] == ()
    assert reaimed.dont_filter and reaimed.meta["ptm_reaim"]
    assert s.reaim(reaimed) is None
    assert s.crawler.stats.get_value("ptm/owners/reaimed") == 1
    # ... and one found later is asked there first.
    (later,) = s.owner_requests("reading-club")
    assert later.url == f"{EP}/api/organizations/reading-club/overview"
    # A user look-up after an organisation 404 stays as it is.
    tried = s.owner_request("acme-ai", "user", ("org",))
    assert s.reaim(tried) is None
    # Requests of other owners are never touched.
    assert s.reaim(s.owner_request("zed", "user", ())) is None


def test_organisations_of_stored_users_are_known_from_the_start(tmp_path):
    from ptmspiders.stores import open_store

    uri = f"sqlite:///{tmp_path}/ptm.sqlite"
    store = open_store(uri)
    store.upsert("owners", [
        {"_id": "huggingface:jdoe", "hub": "huggingface", "name": "jdoe", "type": "user",
         "orgs": ["acme-ai", "new-org"]},
        {"_id": "huggingface:acme-ai", "hub": "huggingface", "name": "acme-ai", "type": "org"},
        {"_id": "huggingface:old", "hub": "huggingface", "name": "old", "type": "user"},
        {"_id": "tfhub:x", "hub": "tfhub", "name": "x", "type": "user", "orgs": ["tf-org"]},
    ])
    store.close()
    crawler = ptm_crawler(HfModelsSpider, {"HF_ENDPOINT": EP, "PTM_STORE_URI": uri})
    crawler.stats.open_spider()
    s = HfModelsSpider.from_crawler(crawler, owners="full")
    asyncio.run(first_requests(s))
    assert s.known_orgs == {"new-org"}  # stored owners are never asked again anyway
    s.owner_kinds_found = {"user": 5}
    (req,) = s.owner_requests("new-org")
    assert req.url == f"{EP}/api/organizations/new-org/overview"
    assert list(s.owner_requests("acme-ai")) == []


def test_renamed_detail_records_the_old_id():
    s = spider()
    entry = next(m for m in models() if m["id"] == "acme-ai/bert-base-cased")
    meta = {"ptm_repo_id": "acme-ai/bert-base-cased-old",
            "redirect_urls": [f"{EP}/api/models/acme-ai/bert-base-cased-old"]}
    out = list(s.parse_detail(response(f"{EP}/api/models/acme-ai/bert-base-cased", entry,
                                       meta=meta)))
    item = next(o for o in out if isinstance(o, ModelItem))
    assert item.hub_id == "acme-ai/bert-base-cased"
    assert item.extra["renamed_from"] == "acme-ai/bert-base-cased-old"
