"""Quotas and faults for the mock hub: what a crawler meets at a real hub on a bad day.

- ``hub.quota(limit, window, prefix="/api/", name="api", style="hf"|"github")``: a fixed-window
  quota counted per window from the moment it is set, answered with the hub's real headers
  (Hugging Face ``RateLimit`` / ``RateLimit-Policy``, GitHub ``X-RateLimit-*``) and a 429 (HF) or
  403 (GitHub) once spent. ``Quota.counts`` holds every request per window, rejected or not,
  so a test can assert that nothing went beyond the quota except a probe per window.
- ``hub.faults.add(kind, rate=..., attempts=1|None, prefix=...)``: ``429`` (a storm with
  ``RateLimit`` t=1, or ``Retry-After`` with ``retry_after=``), ``503``, ``slow`` (``delay=``
  seconds), ``truncated`` (declared Content-Length longer than the body, then the connection
  closes), ``html`` (a 200 HTML page instead of JSON), ``invalid_json``, ``wrong_shape`` (a JSON
  object where a list is expected). ``rate`` chooses URLs by a stable hash, so the same URL is
  faulted on every run; ``attempts=1`` faults only its first attempt, ``None`` every attempt;
  ``contains=`` narrows it to targets holding a text (one list page's cursor).
- ``fill_models(hub, n, owners=...)``: replace the HF catalogue by ``n`` generated models in the
  list/``expand`` format, with organization and user overviews for their owners.
"""

from __future__ import annotations

import math
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from tests.mockhub.server import MockHub, MockRequest, MockResponse

KINDS = ("429", "503", "slow", "truncated", "html", "invalid_json", "wrong_shape")


@dataclass
class Quota:
    limit: int
    window: float
    prefix: str = "/api/"
    name: str = "api"
    style: str = "hf"
    exclude: tuple[str, ...] = ()
    start: float = field(default_factory=time.time)
    counts: dict[int, int] = field(default_factory=dict)
    rejected: dict[int, int] = field(default_factory=dict)

    def matches(self, req: MockRequest) -> bool:
        return req.path.startswith(self.prefix) and not req.path.startswith(self.exclude)

    def count(self, now: float) -> tuple[int, int, float]:
        """Count one request: (window index, requests in it so far, seconds to its end)."""
        index = math.floor((now - self.start) / self.window)
        self.counts[index] = self.counts.get(index, 0) + 1
        return index, self.counts[index], self.start + (index + 1) * self.window - now

    def excess(self, probes: int = 1) -> dict[int, int]:
        """Windows that saw more than ``limit + probes`` requests."""
        return {i: n for i, n in self.counts.items() if n > self.limit + probes}

    def headers(self, remaining: int, reset: float, now: float) -> list[tuple[str, str]]:
        reset_s = max(math.ceil(reset), 0)  # rounded up, like a server that never lies short
        if self.style == "github":
            return [("X-RateLimit-Limit", str(self.limit)),
                    ("X-RateLimit-Remaining", str(remaining)),
                    ("X-RateLimit-Used", str(self.limit - remaining)),
                    ("X-RateLimit-Reset", str(math.ceil(now + reset))),
                    ("X-RateLimit-Resource", self.name)]
        return [("RateLimit", f'"{self.name}";r={remaining};t={reset_s}'),
                ("RateLimit-Policy",
                 f'"fixed window";"{self.name}";q={self.limit};w={self.window:g}')]

    def rejection(self, reset: float, now: float) -> MockResponse:
        headers = self.headers(0, reset, now)
        if self.style == "github":
            resp = MockResponse.json(
                {"message": "API rate limit exceeded for 127.0.0.1.",
                 "documentation_url": "https://docs.github.com/rest/rate-limit"},
                status=403, headers=headers)
        else:
            resp = MockResponse.json(
                {"error": "You have exceeded our rate limit. Retry later."}, status=429,
                headers=headers)
        resp.quota_reject = True  # type: ignore[attr-defined]
        return resp


@dataclass
class Fault:
    kind: str
    rate: float = 1.0
    attempts: int | None = 1
    prefix: str = "/"
    contains: str | None = None  # only targets holding this text (e.g. one page's cursor)
    delay: float = 0.0
    retry_after: str | None = None
    seen: dict[str, int] = field(default_factory=dict)
    hits: int = 0

    def chosen(self, target: str) -> bool:
        if self.rate >= 1:
            return True
        return zlib.crc32(f"{self.kind}|{target}".encode()) % 10_000 < self.rate * 10_000

    def applies(self, req: MockRequest, resp: MockResponse) -> bool:
        if not req.path.startswith(self.prefix) or not self.chosen(req.raw_target):
            return False
        if self.kind in ("invalid_json", "wrong_shape") and resp.status != 200:
            return False  # a body fault spoils a body, not an error answer
        if self.contains is not None and self.contains not in req.raw_target:
            return False
        n = self.seen.get(req.raw_target, 0) + 1
        self.seen[req.raw_target] = n
        return self.attempts is None or n <= self.attempts

    def apply(self, resp: MockResponse) -> MockResponse:
        self.hits += 1
        kind = self.kind
        if kind == "429":
            headers = ([("Retry-After", self.retry_after)] if self.retry_after else
                       [("RateLimit", '"api";r=0;t=1'),
                        ("RateLimit-Policy", '"fixed window";"api";q=500;w=300')])
            return MockResponse.json({"error": "Too Many Requests"}, status=429,
                                     headers=headers)
        if kind == "503":
            return MockResponse.text("<html><body>503 Service Unavailable</body></html>",
                                     status=503, content_type="text/html")
        if kind == "slow":
            resp.delay = self.delay  # type: ignore[attr-defined]
            return resp
        if kind == "truncated":
            cut = MockResponse(resp.status, resp.body[: max(len(resp.body) // 2, 1)],
                               list(resp.headers), resp.content_type)
            cut.declared_length = len(resp.body) + 10  # type: ignore[attr-defined]
            cut.close = True  # type: ignore[attr-defined]
            return cut
        if kind == "html":
            return MockResponse.text("<!DOCTYPE html><html><body>We are down for maintenance"
                                     "</body></html>", content_type="text/html; charset=utf-8",
                                     headers=[h for h in resp.headers if h[0] == "Link"])
        if kind == "invalid_json":
            return MockResponse(resp.status, b'[{"id": "x",, }]', list(resp.headers),
                                resp.content_type)
        if kind == "wrong_shape":
            return MockResponse.json({"error": "Internal error", "models": None},
                                     headers=list(resp.headers))
        raise ValueError(f"unknown fault kind {kind!r}")


class Faults:
    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self.quotas: list[Quota] = []
        self.lock = threading.Lock()

    def add(self, kind: str, rate: float = 1.0, attempts: int | None = 1, prefix: str = "/",
            **options: Any) -> Fault:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}: one of {', '.join(KINDS)}")
        fault = Fault(kind, rate, attempts, prefix, **options)
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()
            self.quotas.clear()

    def before(self, hub: MockHub, req: MockRequest) -> MockResponse | None:
        now = time.time()
        with self.lock:
            for quota in self.quotas:
                if not quota.matches(req):
                    continue
                index, n, reset = quota.count(now)
                if n > quota.limit:
                    quota.rejected[index] = quota.rejected.get(index, 0) + 1
                    return quota.rejection(reset, now)
                extra = getattr(req, "quota_headers", [])
                req.quota_headers = extra + quota.headers(  # type: ignore[attr-defined]
                    quota.limit - n, reset, now)
        return None

    def after(self, hub: MockHub, req: MockRequest, resp: MockResponse) -> MockResponse:
        if getattr(resp, "quota_reject", False):
            return resp
        with self.lock:
            fault = next((f for f in self.faults if f.applies(req, resp)), None)
        if fault is not None:
            resp = fault.apply(resp)
            if fault.kind in ("429", "503"):
                return resp
        resp.headers.extend(getattr(req, "quota_headers", []))
        return resp


def quota(hub: MockHub, limit: int, window: float, **options: Any) -> Quota:
    q = Quota(limit, window, **options)
    with hub.faults.lock:  # type: ignore[attr-defined]
        hub.faults.quotas.append(q)  # type: ignore[attr-defined]
    return q


def generate_models(n: int, owners: int = 20) -> list[dict[str, Any]]:
    """``n`` models in the Hub's list format with the default ``expand`` properties."""
    tasks = ["text-classification", "fill-mask", "image-classification",
             "automatic-speech-recognition", "text-generation"]
    models = []
    for i in range(n):
        owner = f"gen-org-{i % owners:03d}" if i % owners % 2 == 0 else f"gen-user-{i % owners:03d}"
        repo_id = f"{owner}/model-{i:05d}"
        task = tasks[i % len(tasks)]
        models.append({
            "_id": f"{i:024x}",
            "id": repo_id,
            "author": owner,
            "private": False,
            "pipeline_tag": task,
            "library_name": "transformers",
            "tags": ["transformers", "pytorch", task, "license:apache-2.0", "region:us"],
            "downloads": (n - i) * 7,
            "downloadsAllTime": (n - i) * 31,
            "likes": i % 97,
            "sha": f"{zlib.crc32(repo_id.encode()):08x}" * 5,
            "lastModified": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T10:00:00.000Z",
            "createdAt": f"2023-{1 + i % 12:02d}-{1 + i % 28:02d}T09:00:00.000Z",
            "gated": False,
            "disabled": False,
            "config": {"architectures": ["BertModel"], "model_type": "bert"},
            "cardData": {"license": "apache-2.0", "language": "en"},
            "siblings": [{"rfilename": ".gitattributes"}, {"rfilename": "README.md"},
                         {"rfilename": "config.json"}, {"rfilename": "model.safetensors"}],
            "usedStorage": 1000 + i,
            "safetensors": {"parameters": {"F32": 1000 + i}, "total": 1000 + i},
        })
    return models


def fill_models(hub: MockHub, n: int, owners: int = 20) -> list[dict[str, Any]]:
    """Make the mock's HF catalogue ``n`` generated models (and their owners' overviews)."""
    models = generate_models(n, owners)
    catalogue = hub.hf  # type: ignore[attr-defined]
    catalogue.models = models
    catalogue.renames = {}
    catalogue.organizations = {}
    catalogue.users = {}
    for m in models:
        owner = m["author"]
        if owner.startswith("gen-org-"):
            catalogue.organizations[owner] = {"name": owner, "fullname": owner.title(),
                                              "isVerified": False, "numModels": 1,
                                              "numUsers": 1, "numFollowers": 0,
                                              "plan": "free"}
        else:
            catalogue.users[owner] = {"type": "user", "name": owner, "fullname": owner,
                                      "isPro": False, "numModels": 1, "numFollowers": 0}
    return models


def register(hub: MockHub) -> None:
    faults = Faults()
    hub.faults = faults  # type: ignore[attr-defined]
    hub.quota = lambda limit, window, **options: quota(  # type: ignore[attr-defined]
        hub, limit, window, **options)
    hub.before.append(faults.before)
    hub.after.append(faults.after)
