"""The retry middleware as a component: backoff, malformed answers, the final failure."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import pytest
from scrapy import Request, Spider
from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadConnectionRefusedError,
    DownloadTimeoutError,
    NotConfigured,
    ResponseDataLossError,
)
from scrapy.http import Response
from scrapy.utils.misc import build_from_crawler
from scrapy.utils.test import get_crawler
from twisted.internet.error import ConnectionDone, DNSLookupError, TCPTimedOutError
from twisted.python.failure import Failure
from twisted.web._newclient import ResponseFailed, _DataLoss

from ptmspiders.github import git_blob_sha
from ptmspiders.middlewares.retry import (
    NOT_BEFORE_META,
    RetryMiddleware,
    backoff,
    exception_reason,
    malformed_reason,
)

URL = "http://hub.test/api/models?limit=2"


def middleware(**settings: Any) -> RetryMiddleware:
    base: dict[str, Any] = {"PTM_RETRY_TIMES": 2, "PTM_RETRY_BACKOFF_BASE": 0.5,
                            "PTM_RETRY_BACKOFF_MAX": 4.0}
    base.update(settings)
    crawler = get_crawler(Spider, base)
    crawler.spider = Spider.from_crawler(crawler, name="hub")  # get_retry_request reads it
    crawler.stats.open_spider()
    return build_from_crawler(RetryMiddleware, crawler)


def answer(request: Request, status: int = 200, body: bytes = b"[]") -> Response:
    return Response(request.url, status=status, body=body, request=request)


def test_backoff_grows_is_capped_and_jittered() -> None:
    rng = random.Random(7)
    delays = [backoff(n, 1.0, 10.0, rng) for n in range(1, 8)]
    for n, d in enumerate(delays, start=1):
        full = min(10.0, 2 ** (n - 1))
        assert full / 2 <= d <= full
    assert len({round(d, 6) for d in delays}) == len(delays)


def test_5xx_is_retried_with_backoff_then_given_up(caplog: pytest.LogCaptureFixture) -> None:
    mw = middleware()
    request = Request(URL, priority=5)
    before = time.time()
    retry = mw.process_response(request, answer(request, 503))
    assert isinstance(retry, Request)
    assert retry.meta["retry_times"] == 1 and retry.dont_filter and retry.priority == 4
    assert before + 0.25 <= retry.meta[NOT_BEFORE_META] <= time.time() + 0.5
    retry2 = mw.process_response(retry, answer(retry, 502))
    assert isinstance(retry2, Request) and retry2.meta["retry_times"] == 2
    final = answer(retry2, 503)
    with caplog.at_level(logging.ERROR):
        assert mw.process_response(retry2, final) is final
    assert f"Gave up retrying <GET {URL}> (failed 3 times): http_503" in caplog.text
    stats = mw.stats.get_stats()
    assert stats["ptm/retry/count"] == 2
    assert stats["ptm/failed/http_503"] == 1


def test_a_503_with_retry_after_waits_that_long_within_the_cap() -> None:
    mw = middleware()
    request = Request(URL)
    response = Response(URL, status=503, headers={"Retry-After": "3"}, request=request)
    retry = mw.process_response(request, response)
    assert isinstance(retry, Request)
    assert retry.meta[NOT_BEFORE_META] - time.time() > 2.5
    response = Response(URL, status=503, headers={"Retry-After": "600"}, request=request)
    retry = mw.process_response(request, response)
    assert isinstance(retry, Request)
    assert retry.meta[NOT_BEFORE_META] - time.time() <= 4.0  # PTM_RETRY_BACKOFF_MAX


def test_a_body_cut_short_is_retried_even_without_expectation() -> None:
    mw = middleware(PTM_RETRY_TIMES=0)
    request = Request(URL)
    cut = Response(URL, status=200, body=b"[{", flags=["dataloss"], request=request)
    assert mw.process_response(request, cut) is cut  # no retries left: passed on, counted
    assert mw.stats.get_value("ptm/failed/data_loss") == 1
    mw = middleware()
    assert isinstance(mw.process_response(request, cut), Request)


def test_429_is_never_retried_here() -> None:
    mw = middleware()
    request = Request(URL)
    response = answer(request, 429)
    assert mw.process_response(request, response) is response
    with pytest.raises(ValueError, match="429"):
        middleware(PTM_RETRY_HTTP_CODES=[500, 429])


@pytest.mark.parametrize(("expect", "body", "reason"), [
    ("list", b"<!DOCTYPE html><html>busy</html>", "html_instead_of_json"),
    ("list", b'[{"id": "a"}, {"id": "b"', "truncated_json"),
    ("list", b'{"error": "x"}', "wrong_shape"),
    ("object", b"[]", "wrong_shape"),
    ("object", b"", "empty_body"),
    ("any", b"{oops}", "invalid_json"),
])
def test_malformed_answers_are_retried_then_passed_on(
        expect: str, body: bytes, reason: str) -> None:
    mw = middleware(PTM_RETRY_TIMES=1)
    request = Request(URL, meta={"ptm_expect": expect})
    retry = mw.process_response(request, answer(request, 200, body))
    assert isinstance(retry, Request)
    assert mw.stats.get_value(f"ptm/retry/reason_count/bad_response/{reason}") == 1
    last = answer(retry, 200, body)
    assert mw.process_response(retry, last) is last  # the spider names and counts it


def test_good_json_and_requests_without_expectation_pass() -> None:
    mw = middleware()
    ok = Request(URL, meta={"ptm_expect": "list"})
    response = answer(ok, 200, b'[{"id": "a"}]')
    assert mw.process_response(ok, response) is response
    plain = Request(URL)
    html = answer(plain, 200, b"<html></html>")
    assert mw.process_response(plain, html) is html
    assert malformed_reason(answer(ok, 404, b"<html>"), "list") is None
    with pytest.raises(ValueError, match="ptm_expect"):
        malformed_reason(answer(ok, 200, b"[]"), "table")


@pytest.mark.parametrize("decode_once", [True, False])
def test_the_checked_body_is_kept_for_the_spider_with_the_perf_switch_on(
        decode_once: bool) -> None:
    from ptmspiders.perf import decoded

    mw = middleware(PTM_PERF_DECODE_ONCE=decode_once)
    ok = Request(URL, meta={"ptm_expect": "list"})
    response = answer(ok, 200, b'[{"id": "a"}]')
    assert mw.process_response(ok, response) is response
    kept = decoded.take(response.body)
    assert (kept is not decoded.MISSING) is decode_once
    if decode_once:
        assert kept == [{"id": "a"}]


def test_dont_retry_is_honoured() -> None:
    mw = middleware()
    request = Request(URL, meta={"dont_retry": True})
    response = answer(request, 503)
    assert mw.process_response(request, response) is response


@pytest.mark.parametrize(("exc", "reason"), [
    (DownloadTimeoutError(), "timeout"),
    (DownloadConnectionRefusedError(), "connection"),
    (CannotResolveHostError(), "dns"),
    (ResponseDataLossError(), "data_loss"),
    (ConnectionDone(), "connection"),
])
def test_exceptions_are_retried_then_counted(exc: Exception, reason: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    assert exception_reason(exc) == reason
    mw = middleware(PTM_RETRY_TIMES=1)
    request = Request(URL)
    retry = mw.process_exception(request, exc)
    assert isinstance(retry, Request)
    with caplog.at_level(logging.ERROR):
        assert mw.process_exception(retry, exc) is None
    assert mw.stats.get_value(f"ptm/failed/{reason}") == 1
    assert URL in caplog.text


def test_twisted_exception_names() -> None:
    assert exception_reason(TCPTimedOutError()) == "timeout"
    assert exception_reason(DNSLookupError()) == "dns"
    assert exception_reason(ResponseFailed([Failure(_DataLoss())])) == "data_loss"
    assert exception_reason(KeyError("x")) == "keyerror"


def test_waits_in_process_request_without_blocking() -> None:
    mw = middleware()
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    mw.sleep = fake_sleep
    request = Request(URL, meta={NOT_BEFORE_META: time.time() + 2.0})
    asyncio.run(mw.process_request(request))
    assert len(slept) == 1 and 1.5 < slept[0] <= 2.0
    # A stale time from a resumed job never waits longer than the cap.
    far = Request(URL, meta={NOT_BEFORE_META: time.time() + 3600})
    asyncio.run(mw.process_request(far))
    assert slept[-1] == 4.0


def test_switched_off_and_bad_settings() -> None:
    with pytest.raises(NotConfigured):
        middleware(PTM_RETRY_ENABLED=False)
    with pytest.raises(ValueError, match="PTM_RETRY"):
        middleware(PTM_RETRY_BACKOFF_BASE=5.0, PTM_RETRY_BACKOFF_MAX=1.0)


def test_a_raw_file_malformed_as_committed_is_passed_on_at_once() -> None:
    mw = middleware()
    body = b'[{"model": '
    committed = Request(URL, meta={"ptm_expect": "list", "ptm_git_blob": git_blob_sha(body)})
    response = answer(committed, 200, body)
    assert mw.process_response(committed, response) is response  # no retry can change it
    assert mw.stats.get_value("ptm/retry/skipped/committed_truncated_json") == 1
    # A body other than the committed one (an error page, a cut) is retried as usual.
    html = answer(committed, 200, b"<html>busy</html>")
    assert isinstance(mw.process_response(committed, html), Request)


def test_scrapys_retry_settings_that_ours_stand_for_are_refused_not_ignored() -> None:
    for name, ours in [("RETRY_TIMES", "PTM_RETRY_TIMES"), ("RETRY_ENABLED", "PTM_RETRY_ENABLED"),
                       ("RETRY_HTTP_CODES", "PTM_RETRY_HTTP_CODES")]:
        with pytest.raises(ValueError, match=f"{name} is not read.*set {ours}"):
            middleware(**{name: 9})


def test_the_give_up_follows_scrapys_level_and_is_a_warning_for_malformed_answers(
        caplog: pytest.LogCaptureFixture) -> None:
    mw = middleware(PTM_RETRY_TIMES=0, RETRY_GIVE_UP_LOG_LEVEL="WARNING")
    request = Request(URL)
    with caplog.at_level(logging.DEBUG, logger="ptmspiders.middlewares.retry"):
        mw.process_response(request, answer(request, 500))
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == f"Gave up retrying <GET {URL}> (failed 1 times): http_500"
    caplog.clear()
    mw = middleware(PTM_RETRY_TIMES=0)
    html = Request(URL, meta={"ptm_expect": "any"})
    with caplog.at_level(logging.DEBUG, logger="ptmspiders.middlewares.retry"):
        mw.process_response(html, answer(html, 200, b"<html>"))
    [record] = caplog.records
    assert record.levelno == logging.WARNING  # the spider logs and counts it too
    assert "bad_response/html_instead_of_json" in record.getMessage()
    assert mw.stats.get_value("ptm/retry/max_reached") == 1
    assert not any(k.startswith("ptm/failed/") for k in mw.stats.get_stats())
