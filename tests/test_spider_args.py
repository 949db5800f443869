"""Spider arguments: every spider's parameter model refuses a wrong value or an unknown name at
start in one line, keeps the old spellings, and says which arguments restrict the crawl;
``scrapy crawl`` reports a refusal in one line with exit status 2 and sends nothing."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from scrapy.settings import Settings
from scrapy.spiderloader import SpiderLoader
from scrapy.utils.test import get_crawler
from scrapy_spider_metadata import get_spider_metadata

from ptmspiders.args import ArgumentError, SpiderParams
from ptmspiders.commands.crawl import Command
from ptmspiders.spiders.base import PtmSpider
from tests.conftest import one_error_line, run_crawl
from tests.mockhub import MockHub

LOADER = SpiderLoader(Settings({"SPIDER_MODULES": ["ptmspiders.spiders"]}))
SPIDERS: dict[str, type[PtmSpider[Any]]] = {name: LOADER.load(name) for name in LOADER.list()}


def test_every_spider_of_the_project_has_a_parameter_model() -> None:
    assert set(SPIDERS) == {"hf_models", "kaggle_models", "modelzoo", "pytorch_hub",
                            "onnx_zoo", "tfhub", "modelhub", "packages"}
    for cls in SPIDERS.values():
        assert issubclass(cls, PtmSpider)
        assert issubclass(cls.params_model(), SpiderParams)


def create(spider: str, /, **kwargs: Any) -> PtmSpider[Any]:
    cls = SPIDERS[spider]
    return cls.from_crawler(get_crawler(cls, {"PTM_STORE_ENABLED": False}), **kwargs)


# A wrong value and an unknown name per spider; ``limit`` is no argument of the catalogues, so
# ``-a limit=5`` there used to be ignored and the whole catalogue crawled.
BAD = [
    ("hf_models", {"limit": "abc"}, "-a limit='abc': Input should be a valid integer"),
    ("hf_models", {"limt": "10"}, "-a limt='10': unknown argument (did you mean limit?"),
    ("kaggle_models", {"sort_by": "stars"}, "-a sort_by='stars': expected one of "),
    ("kaggle_models", {"ower": "google"}, "-a ower='google': unknown argument (did you mean "
                                          "owner?"),
    ("modelzoo", {"render": "sometimes"}, "-a render='sometimes': Input should be 'fallback', "
                                          "'always' or 'never'"),
    ("modelzoo", {"slug": "x"}, "-a slug='x': unknown argument (did you mean slugs?"),
    ("pytorch_hub", {"full": "perhaps"}, "-a full='perhaps': Input should be a valid boolean"),
    ("pytorch_hub", {"limit": "5"}, "-a limit='5': unknown argument (pytorch_hub takes full, "
                                    "paths)"),
    ("onnx_zoo", {"full": "2"}, "-a full='2': Input should be a valid boolean"),
    ("onnx_zoo", {"path": "a"}, "-a path='a': unknown argument (did you mean paths?"),
    ("tfhub", {"full": "maybe"}, "-a full='maybe': Input should be a valid boolean"),
    ("tfhub", {"collections": "a"}, "-a collections='a': unknown argument"),
    ("modelhub", {"full": "x"}, "-a full='x': Input should be a valid boolean"),
    ("modelhub", {"name": "other"}, "-a name='other': unknown argument"),
    ("packages", {"weights": "pickles"}, "-a weights='pickles': expected one of all, none, "
                                         "safe"),
    ("packages", {"hubs": "kaggle"}, "-a hubs='kaggle': unknown argument (did you mean hub?"),
    # Beyond what a store's integer holds: the crawl record's write failed with a traceback.
    ("hf_models", {"limit": "9" * 20}, f"-a limit='{'9' * 20}': Input should be less than or "
                                       "equal to 9223372036854775807"),
    ("packages", {"limit": "9" * 20}, f"-a limit='{'9' * 20}': Input should be less than or "
                                      "equal to 9223372036854775807"),
    ("packages", {"max_bytes": "9" * 20 + "G"}, f"-a max_bytes='{'9' * 20}G': Input should be "
                                                "less than or equal to 9223372036854775807"),
    # A filter the stores refuse failed the crawl's first query with a traceback.
    ("packages", {"filter": '{"downloads": {"$foo": 1}}'}, "-a filter='{\"downloads\": "
                                                           "{\"$foo\": 1}}': unsupported "
                                                           "operator $foo on downloads"),
    ("packages", {"filter": '{"a": NaN}'}, "-a filter='{\"a\": NaN}': nan for a: NaN and "
                                           "infinite numbers are not supported"),
    ("packages", {"filter": "[" * 100_000}, f"-a filter='{'[' * 100_000}': "),
    # A typo sorted by nothing: -a limit then took arbitrary models.
    ("packages", {"sort": "-downlods"}, "-a sort='-downlods': models have no field 'downlods' "
                                        "(did you mean downloads?)"),
    # More digits than a float holds: an OverflowError escaped as a traceback.
    ("packages", {"max_bytes": "9" * 400}, f"-a max_bytes='{'9' * 400}': a size such as 500G"),
]


@pytest.mark.parametrize(("name", "kwargs", "message"), BAD)
def test_a_wrong_argument_stops_the_spider_at_creation_in_one_line(
        name: str, kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ArgumentError) as caught:
        create(name, **kwargs)
    text = str(caught.value)
    assert text.startswith(f"{name}: {message}")
    assert "\n" not in text


def test_every_problem_is_in_the_one_line() -> None:
    with pytest.raises(ArgumentError) as caught:
        create("kaggle_models", limit="-1", sort_by="x", nonsense="1")
    assert str(caught.value).count("; ") == 2 and "\n" not in str(caught.value)


@pytest.mark.parametrize(("value", "full"), [
    ("1", True), ("true", True), ("yes", True), ("on", True), (" TRUE ", True), (True, True),
    ("0", False), ("false", False), ("no", False), ("off", False), ("", False), (False, False),
])
def test_full_keeps_its_spellings(value: Any, full: bool) -> None:
    for name in SPIDERS:
        assert SPIDERS[name].parse_args({"full": value}).full is full


def test_blank_values_mean_not_given() -> None:
    hf = SPIDERS["hf_models"].parse_args(
        {"limit": "", "author": " ", "filter": "", "sort": "", "ids": ",", "expand": ""})
    assert hf == SPIDERS["hf_models"].parse_args({})
    assert SPIDERS["modelzoo"].parse_args({"render": ""}).render == "fallback"
    assert SPIDERS["kaggle_models"].parse_args({"owner": " google ", "limit": " 7 "}).model_dump(
        exclude_defaults=True) == {"owner": "google", "limit": 7}


def test_lists_are_comma_separated_and_stripped() -> None:
    hf = SPIDERS["hf_models"].parse_args
    assert hf({"filter": " en, fill-mask ,,"}).filter == ["en", "fill-mask"]
    assert hf({"ids": "a/b,c/d,a/b"}).ids == ["a/b", "c/d"]  # each asked once
    assert SPIDERS["tfhub"].parse_args({"paths": "a.md,assets/docs/google/"}).paths == [
        "a.md", "assets/docs/google/"]


def test_cross_argument_rules() -> None:
    with pytest.raises(ArgumentError, match=r"^modelzoo: -a slugs cannot go with -a limit"):
        SPIDERS["modelzoo"].parse_args({"slugs": "a", "limit": "1"})
    with pytest.raises(ArgumentError,
                       match=r"^hf_models: -a ids cannot go with -a limit, -a sort"):
        SPIDERS["hf_models"].parse_args({"ids": "a/b", "limit": "1", "sort": "likes"})
    assert SPIDERS["hf_models"].parse_args({"ids": "a/b", "expand": "sha"}).expand == ["sha"]


@pytest.mark.parametrize(("name", "kwargs", "restricted_by"), [
    ("hf_models", {"limit": "5"}, ["limit"]),
    ("hf_models", {"author": "o", "search": "bert", "filter": "en"},
     ["author", "search", "filter"]),
    ("hf_models", {"ids": "a/b", "owners": "full", "expand": "sha"}, ["ids"]),
    ("hf_models", {"sort": "likes", "owners": "0", "full": "1", "expand": "sha,tags"}, []),
    ("kaggle_models", {"owner": "google", "search": "gemma", "limit": "3"},
     ["owner", "search", "limit"]),
    ("kaggle_models", {"sort_by": "voteCount", "full": "1"}, []),
    ("modelzoo", {"slugs": "a,b", "render": "never"}, ["slugs"]),
    ("modelzoo", {"limit": "2"}, ["limit"]),
    ("modelzoo", {"render": "always", "full": "yes"}, []),
    ("pytorch_hub", {"paths": "hubconf.md"}, ["paths"]),
    ("tfhub", {"full": "1"}, []),
    ("onnx_zoo", {}, []),
    ("modelhub", {"paths": ""}, []),
])
def test_the_model_says_which_arguments_restrict_the_crawl(
        name: str, kwargs: dict[str, str], restricted_by: list[str]) -> None:
    params = SPIDERS[name].parse_args(kwargs)
    assert params.restricted_by() == restricted_by
    assert params.restricted is bool(restricted_by)


def test_a_packages_crawl_is_restricted_whatever_its_arguments() -> None:
    """It downloads packages of models already stored and lists no hub."""
    for kwargs in ({}, {"top": "0.1", "weights": "safe"}):
        params = SPIDERS["packages"].parse_args(kwargs)
        assert params.restricted_by() == [] and params.restricted is True


def test_a_new_restricting_field_needs_nothing_but_its_declaration() -> None:
    from pydantic import Field

    from ptmspiders.args import RESTRICTS, Text
    from ptmspiders.spiders.hf_models import HfModelsParams

    class WithRegion(HfModelsParams):
        region: Text = Field(None, description="only this region", json_schema_extra=RESTRICTS)

    assert WithRegion(region="eu").restricted_by() == ["region"]
    assert WithRegion(sort="likes").restricted is False


def test_every_argument_has_help_text_in_the_published_schema() -> None:
    for name, cls in SPIDERS.items():
        schema = get_spider_metadata(cls)["param_schema"]
        assert set(schema["properties"]) == set(cls.params_model().model_fields)
        for field, spec in schema["properties"].items():
            assert spec.get("description"), f"{name} -a {field} has no description"
    assert get_spider_metadata(SPIDERS["hf_models"])["param_schema"]["properties"]["limit"][
        "restrictsCrawl"] is True


def test_the_schedulers_arguments_pass_through_and_raw_values_are_no_attributes() -> None:
    """scrapyd adds ``-a _job=<id>``: the spider keeps it as Scrapy would, and it is neither
    checked nor recorded. The spider's own arguments live in ``self.args`` only."""
    spider = create("hf_models", _job="7f3a", limit="5", full="0")
    assert spider._job == "7f3a"  # type: ignore[attr-defined]
    assert spider.args.recorded() == {"limit": 5}
    assert "limit" not in vars(spider) and "full" not in vars(spider)


def command() -> Command:
    command = Command()
    command.crawler_process = SimpleNamespace(spider_loader=LOADER)  # type: ignore[assignment]
    return command


def test_the_crawl_command_refuses_wrong_arguments_before_the_crawl(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        assert command().arguments_refused("hf_models", {"limit": "abc"}) is True
    assert [r.getMessage() for r in caplog.records] == [
        "hf_models: -a limit='abc': Input should be a valid integer, unable to parse string as "
        "an integer"]
    assert command().arguments_refused("hf_models", {"limit": "5", "_job": "1"}) is False
    # An unknown spider name is reported by run() (see the test below).
    assert command().arguments_refused("no_such_spider", {"limit": "5"}) is False


@pytest.mark.crawl
@pytest.mark.parametrize(("spider", "argument", "message"), [
    ("hf_models", "limit=abc", "hf_models: -a limit='abc': Input should be a valid integer, "
                               "unable to parse string as an integer"),
    ("pytorch_hub", "limt=10", "pytorch_hub: -a limt='10': unknown argument (pytorch_hub takes "
                               "full, paths)"),
])
def test_scrapy_crawl_refuses_a_wrong_argument_in_one_line(
        mockhub: MockHub, tmp_path: Path, spider: str, argument: str, message: str) -> None:
    result = run_crawl(spider, mockhub, tmp_path, "-a", argument, check=False, timeout=120)
    assert one_error_line(result, 2).endswith(message)
    assert mockhub.log == []  # nothing asked of the hub
    assert not (tmp_path / "ptm.sqlite").exists()  # no store opened, no crawl record


@pytest.mark.crawl
def test_scrapy_crawl_names_the_spiders_for_an_unknown_one_in_one_line(
        mockhub: MockHub, tmp_path: Path) -> None:
    """Scrapy's ``KeyError: 'Spider not found'`` was a traceback."""
    result = run_crawl("hf_model", mockhub, tmp_path, check=False, timeout=120)
    assert one_error_line(result, 2).endswith(
        "No spider 'hf_model': one of hf_models, kaggle_models, modelhub, modelzoo, onnx_zoo, "
        "packages, pytorch_hub, tfhub")
    assert mockhub.log == [] and not (tmp_path / "ptm.sqlite").exists()
