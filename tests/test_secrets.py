"""Tokens reach only their own hub's origin, and never a log line, stat, export or store."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.conftest import crawl_stats, hub_env, run_crawl
from tests.mockhub import MockHub, MockRequest, MockResponse
from tests.mockhub.faults import fill_models

pytestmark = pytest.mark.crawl

# Fake tokens, assembled so that no token-shaped literal sits in the repository.
HF_TOKEN = "hf_" + "FAKEtoken0123456789abcdefSECRET"
GITHUB_TOKEN = "ghp_" + "FAKEtoken0123456789abcdefSECRET"
KAGGLE_KEY = "kaggleFAKEkey0123456789SECRET"


def test_tokens_stay_with_their_hub_and_out_of_every_output(tmp_path: Path) -> None:
    with MockHub() as hf, MockHub() as other:
        models = fill_models(hf, 120, owners=4)
        fill_models(other, 120, owners=4)
        moved = models[0]["id"]

        def redirect(hub: MockHub, req: MockRequest) -> MockResponse | None:
            # A renamed repository whose new home is on another origin.
            if req.path == "/api/models/old-org/old-name":
                return MockResponse.text("moved", status=307, headers=[
                    ("Location", f"{other.url}/api/models/{moved}")])
            return None

        hf.before.insert(0, redirect)
        # A hub having a bad moment: errors must not leak the token either.
        hf.faults.add("503", rate=0.3, prefix="/api/")  # type: ignore[attr-defined]
        # The other origin is no hub's: nothing may carry a credential there.
        env = hub_env(hf, HF_TOKEN=HF_TOKEN, GITHUB_TOKEN=GITHUB_TOKEN,
                      KAGGLE_USERNAME="someone", KAGGLE_KEY=KAGGLE_KEY,
                      GITHUB_API_URL="http://127.0.0.1:9", GITHUB_RAW_URL="http://127.0.0.1:9/raw",
                      KAGGLE_API_URL="http://127.0.0.1:9/api/v1")
        export = tmp_path / "items.jsonl"
        listing = run_crawl("hf_models", hf, tmp_path, "-s", "LOG_LEVEL=DEBUG",
                            "-s", "PTM_HF_PAGE_SIZE=30", "-s", "PTM_RETRY_BACKOFF_BASE=0.05",
                            "-O", str(export), env=env)
        details = run_crawl("hf_models", hf, tmp_path, "-s", "LOG_LEVEL=DEBUG",
                            "-a", f"ids=old-org/old-name,{models[1]['id']}",
                            "-O", str(tmp_path / "details.jsonl"), env=env)

        hf_requests = hf.requests()
        other_requests = other.requests()
        hf_auth = {r.headers.get("authorization") for r in hf_requests}
        other_auth = {r.headers.get("authorization") for r in other_requests}

    # The Hub got its own token on every request, and nothing else.
    assert hf_auth == {f"Bearer {HF_TOKEN}"}
    # The redirect left the Hub's origin: refused before it was sent (a hub API answer from
    # another origin is no Hub data), so the other origin saw no request, let alone a
    # credential. Authorization is stripped off other redirects (test_kaggle_crawl.py).
    assert other_requests == [] and other_auth == set()
    assert crawl_stats(details)["ptm/refused_link"] == 1

    kaggle_basic = base64.b64encode(f"someone:{KAGGLE_KEY}".encode()).decode()
    outputs = {
        "listing log": listing.stderr + listing.stdout,
        "details log": details.stderr + details.stdout,
        "export": export.read_text(),
        "details export": (tmp_path / "details.jsonl").read_text(),
        "store": "".join(p.read_bytes().decode("latin-1")
                         for p in tmp_path.glob("ptm.sqlite*")),
    }
    assert len(export.read_text().splitlines()) >= 120
    for name, text in outputs.items():
        for secret in (HF_TOKEN, GITHUB_TOKEN, KAGGLE_KEY, kaggle_basic):
            assert secret not in text, f"{secret[:6]}... leaked into the {name}"
    assert "Hub credentials in use: HF_TOKEN, GITHUB_TOKEN, KAGGLE_KEY" in listing.stderr


def test_github_token_goes_to_the_api_and_never_to_the_raw_host(tmp_path: Path) -> None:
    with MockHub() as api, MockHub() as raw:
        env = hub_env(api, GITHUB_TOKEN=GITHUB_TOKEN, HF_TOKEN=HF_TOKEN,
                      HF_ENDPOINT="http://127.0.0.1:9", GITHUB_RAW_URL=f"{raw.url}/raw")
        result = run_crawl("pytorch_hub", api, tmp_path, "-s", "LOG_LEVEL=DEBUG",
                           "-O", str(tmp_path / "items.jsonl"), env=env)
        api_requests = api.requests()
        raw_requests = raw.requests()
    assert api_requests and raw_requests
    assert {r.headers.get("authorization") for r in api_requests} == {
        f"Bearer {GITHUB_TOKEN}"}
    assert {r.headers.get("authorization") for r in raw_requests} == {None}
    for text in (result.stderr, (tmp_path / "items.jsonl").read_text()):
        assert GITHUB_TOKEN not in text and HF_TOKEN not in text


def test_credentials_match_origins_by_the_one_origin_rule() -> None:
    from ptmspiders.middlewares.auth import origin
    from ptmspiders.origins import origin as http_origin

    for url in ("https://HuggingFace.co/api/models", "http://127.0.0.1:8000/x",
                "https://hub.test:443/a"):
        assert origin(url) == http_origin(url)
    # A URL with no http(s) origin gets "", which no credential has: never a token.
    assert origin("data:,hello") == origin("file:///etc/passwd") == ""
    assert origin("http://127.0.0.1:99999/x") == ""
