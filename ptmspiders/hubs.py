"""The registry of hubs: every fact about a hub, and about the services it is read through, once.

A *hub* is where models are published; its ``key`` is the value of every stored document's
``hub`` field (and the prefix of its ``_id``). A *service* is an HTTP API a hub is read
through, with its own base-URL setting, credential and rate limit: the Hugging Face Hub, GitHub's
REST API and raw-file host (which serve four GitHub-hosted catalogues), Kaggle's API, modelzoo.co,
tfhub.dev's model URLs (packages).

Readers: ``ptm stats``/``export``/``report`` (the keys), ``ptm export --format ptmtorrent`` (names
and home pages), the throttle (``middlewares/ratelimit.py``: buckets, quotas, windows), the
credentials middleware and the shared throttle (``middlewares/auth.py``, ``ratelimit_redis.py``:
which environment variables authenticate which service). The settings named here are declared
in ``config.py``; the JSON Schemas' ``hub`` enums are checked against :data:`HUBS` by
``tests/test_hubs.py``, as is every spider's ``hub``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class Service:
    """An HTTP API (a base URL) that hubs are read through, and its rate-limit facts."""

    key: str  # the throttle's name for it: log lines, shared-state keys, ``ptm/ratelimit`` stats
    url_setting: str  # the setting (and environment variable) holding its base URL
    buckets: tuple[str, ...] = ()  # its rate-limit buckets; empty: not paced at all
    window: float = 0.0  # seconds: the default of ``window_setting`` (config.py reads it)
    window_setting: str | None = None
    # Environment variables that authenticate it (all must be set); the first one names the
    # quota the requests count against (ratelimit_redis.py). Empty: always anonymous.
    credentials: tuple[str, ...] = ()
    auth_scheme: str | None = None  # "Bearer" (a token) or "Basic" (user name and key)
    # Published quotas per window: a tier name -> one quota per bucket (in ``buckets`` order).
    tiers: Mapping[str, tuple[int, ...]] = field(
        default_factory=lambda: MappingProxyType({}), hash=False)
    exempt: bool = False  # its requests are never paced nor counted (GitHub's raw files)


@dataclass(frozen=True)
class Hub:
    """One model hub: its key, how people know it, which spiders crawl it, where it is read."""

    key: str  # the documents' ``hub`` field
    name: str  # the display name (PTMTorrent's, where it had the hub)
    home: str  # the hub's home page
    spiders: tuple[str, ...]  # the Scrapy spiders that crawl it (``scrapy list`` names)
    services: tuple[Service, ...]  # what it is read through


HUGGINGFACE_API = Service(
    "huggingface", "HF_ENDPOINT", buckets=("api", "resolvers", "pages"), window=300.0,
    window_setting="PTM_HF_WINDOW", credentials=("HF_TOKEN",), auth_scheme="Bearer",
    # Per 5-minute window: (api for /api/..., resolvers for /{repo}/resolve/..., pages for the
    # rest), hub-docs rate-limits.md. PTM_HF_TIER picks one.
    tiers=MappingProxyType({
        "anonymous": (500, 3000, 100),
        "free": (1000, 5000, 200),
        "pro": (2500, 12000, 400),
        "team": (3000, 20000, 400),
        "enterprise": (6000, 50000, 600),
    }))
GITHUB_API = Service(
    "github", "GITHUB_API_URL", buckets=("core",), window=3600.0,
    window_setting="PTM_GITHUB_WINDOW", credentials=("GITHUB_TOKEN",), auth_scheme="Bearer",
    # GitHub's REST quota per hour: anonymous, and with GITHUB_TOKEN (PTM_GITHUB_QUOTA=0).
    tiers=MappingProxyType({"anonymous": (60,), "token": (5000,)}))
GITHUB_RAW = Service(
    "github_raw", "GITHUB_RAW_URL", buckets=("raw",), window=3600.0,
    window_setting="PTM_GITHUB_WINDOW", exempt=True)
KAGGLE_API = Service(
    "kaggle", "KAGGLE_API_URL", buckets=("kaggle",), window=60.0,
    window_setting="PTM_KAGGLE_WINDOW", credentials=("KAGGLE_USERNAME", "KAGGLE_KEY"),
    auth_scheme="Basic")  # Kaggle publishes no quota: PTM_KAGGLE_QUOTA is a cautious guess
MODELZOO_SITE = Service("modelzoo", "MODELZOO_URL")  # no published budget, no credential
# tfhub.dev's model URLs: packages only (each redirects to the model's Kaggle archive).
TFHUB_SITE = Service("tfhub_site", "TFHUB_URL")  # no published budget, no credential

# Order matters only where two services share one base URL (a test's single mock): the later
# one's credential is sent (middlewares/auth.py) and its rate-limit rule wins (ratelimit.py).
SERVICES: Mapping[str, Service] = MappingProxyType({
    s.key: s for s in (HUGGINGFACE_API, GITHUB_API, GITHUB_RAW, KAGGLE_API, MODELZOO_SITE,
                       TFHUB_SITE)})
"""Every service by key."""

_GITHUB = (GITHUB_API, GITHUB_RAW)
HUBS: Mapping[str, Hub] = MappingProxyType({h.key: h for h in (
    Hub("huggingface", "Hugging Face", "https://huggingface.co", ("hf_models",),
        (HUGGINGFACE_API,)),
    Hub("pytorch_hub", "PyTorch Hub", "https://pytorch.org/hub", ("pytorch_hub",), _GITHUB),
    Hub("onnx_zoo", "ONNX Model Zoo", "https://github.com/onnx/models", ("onnx_zoo",), _GITHUB),
    Hub("tfhub", "TensorFlow Hub", "https://tfhub.dev", ("tfhub",), (*_GITHUB, TFHUB_SITE)),
    Hub("kaggle", "Kaggle Models", "https://www.kaggle.com/models", ("kaggle_models",),
        (KAGGLE_API,)),
    Hub("modelzoo", "ModelZoo", "https://modelzoo.co", ("modelzoo",), (MODELZOO_SITE,)),
    Hub("modelhub", "Modelhub", "https://modelhub.ai", ("modelhub",), _GITHUB),
)})
"""Every hub by key, in the order ``ptm stats`` lists them."""


def unknown_hubs(keys: Iterable[str]) -> list[str]:
    """The names in ``keys`` that are not hub keys, sorted (for one clear error line)."""
    return sorted(set(keys) - HUBS.keys())
