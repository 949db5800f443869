"""The project's own settings (``PTM_*`` and the hub base URLs) as one typed, validated object.

Each setting is declared once here: its type, default, rule and description. Components read
them through :func:`ptm_settings` (or :meth:`PtmSettings.from_settings` before a crawler
exists), never with a ``getint`` and a default of their own. Values come from the crawl's Scrapy
settings (``-s`` and environment values arrive as strings and are converted); settings marked
*env* fall back to the environment variable of the same name (for base URLs, the one the hub's
own client reads), then to the default. A bad value fails the crawl at start in one line that
names the setting and its rule (``scrapy crawl`` exits 2, see ptmspiders/commands/crawl.py).

``docs/settings.md`` holds the table :func:`settings_table` writes
(``python -m ptmspiders.config`` prints it; ``tests/test_config.py`` fails when they differ).
"""

from __future__ import annotations

import json
import os
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from ptmspiders import doc_size
from ptmspiders.hubs import GITHUB_API, HUGGINGFACE_API, KAGGLE_API
from ptmspiders.parsers.huggingface import MAX_PAGE_SIZE as HF_MAX_PAGE_SIZE
from ptmspiders.parsers.kaggle import MAX_PAGE_SIZE as KAGGLE_MAX_PAGE_SIZE

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

# Settings named without the PTM_ prefix: the hubs' base URLs, whose names are the environment
# variables the hubs' own clients read.
UNPREFIXED = frozenset({"hf_endpoint", "github_api_url", "github_raw_url", "modelzoo_url",
                        "kaggle_api_url", "tfhub_url", "github_media_url"})
HF_BUCKETS: tuple[str, ...] = HUGGINGFACE_API.buckets
HF_TIERS: tuple[str, ...] = tuple(HUGGINGFACE_API.tiers)
SIGNATURE_METHODS = ("git", "html", "api")

# What Hugging Face owner look-ups collect (``PTM_HF_OWNERS``, ``-a owners=``). ``orgs``: the
# organisations' overview, one call per owner; its 404 marks a user. ``full``: every user's
# overview too (a wrong guess of the kind costs a second call). ``off``: none.
OwnerMode = Literal["orgs", "full", "off"]
StoreWriterMode = Literal["process", "thread", "inline"]
# Batches queued for a writer when PTM_STORE_WRITER_MAX_PENDING is unset. A thread's live in
# the crawl's memory as Python objects: two, since at 1M models eight cost the crawl's thread
# more CPU than the waiting they saved and took its peak RSS past 400 MB. A process holds each
# as one ~4 MB buffer of its own, and twelve let it take batches on through most of its longest
# commits (docs/performance.md, "The writer's process").
PENDING_BATCHES: dict[str, int] = {"process": 12, "thread": 2, "inline": 1}
OWNER_MODES: tuple[str, ...] = get_args(OwnerMode)
DEFAULT_OWNER_MODE = "orgs"
_FLAG = TypeAdapter(bool)


class SettingsError(ValueError):
    """A setting whose value its rule refuses; the message is one line naming both."""


def setting_name(field: str) -> str:
    """The Scrapy setting (and, for *env* settings, environment variable) of a field."""
    return field.upper() if field in UNPREFIXED else f"PTM_{field.upper()}"


def redacted(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    try:
        password = parts.password
    except ValueError:
        password = None
    if password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def owners_mode(value: Any) -> str:
    """``orgs``, ``full`` or ``off``; the booleans this was before there were modes (1/0,
    true/false, yes/no, on/off; empty for off) mean the default mode and off."""
    if value is None:
        return DEFAULT_OWNER_MODE
    if isinstance(value, str) and value.strip().lower() in OWNER_MODES:
        return value.strip().lower()
    if isinstance(value, str) and not value.strip():
        return "off"
    try:
        return DEFAULT_OWNER_MODE if _FLAG.validate_python(value) else "off"
    except ValidationError:
        raise ValueError("expected orgs, full or off (1/0 for orgs/off)") from None


def frontier_problem(url: str) -> str | None:
    """Why ``url`` is not a Redis URL ``PTM_FRONTIER`` can name (None: it is one)."""
    parts = urlsplit(url)
    expected = "expected redis://host:port/db (or rediss://, unix://)"
    try:
        _ = parts.port
    except ValueError:
        return f"bad port; {expected}"
    if parts.scheme not in ("redis", "rediss", "unix"):
        return expected
    if parts.scheme != "unix" and not parts.hostname:
        return f"no host; {expected}"
    db = parts.path.strip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        return f"database {db!r} is not a number; {expected}"
    return None


# -- value types: what a string from -s or the environment becomes ------------------------------

def _http_url(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http(s) URL")
    return value.strip().rstrip("/")


def _split(value: Any) -> Any:
    """``"a,b"`` (a ``-s`` value) as a list, as Scrapy's ``getlist`` reads it."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def _json_object(value: Any) -> Any:
    """A JSON object given as a string (``-s PTM_HF_QUOTAS='{"api": 2500}'``)."""
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            return json.loads(value)
        except ValueError:
            raise ValueError("expected a JSON object") from None
    return value


def _stripped_lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _one_of(choices: tuple[str, ...]) -> Any:
    def check(value: str) -> str:
        if value not in choices:
            shown = ", ".join(c or "(empty)" for c in choices)
            raise ValueError(f"expected one of {shown}")
        return value
    return AfterValidator(check)


def _retry_codes(codes: list[int]) -> list[int]:
    if 429 in codes:
        raise ValueError("must not hold 429: rate limits are waited out by "
                         "RateLimitMiddleware, not retried")
    return sorted(set(codes))


def _hf_quotas(quotas: dict[str, int]) -> dict[str, int]:
    for name, value in quotas.items():
        if name not in HF_BUCKETS or value < 1:
            raise ValueError(f"{name}={value!r}: buckets are {', '.join(HF_BUCKETS)}, each a "
                             "quota >= 1")
    return quotas


def _three(value: Any) -> Any:
    value = _split(value)
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise ValueError("expected three integers")
    return value


_C_INT_MAX = 2**31 - 1  # gc.set_threshold takes C ints


def _gc_thresholds(value: tuple[int, int, int]) -> tuple[int, int, int]:
    if value[0] < 1 or min(value) < 0:
        raise ValueError("expected three integers, the first at least 1 (0 would switch the "
                         "collector off)")
    if max(value) > _C_INT_MAX:  # gc.set_threshold's OverflowError was a traceback at start
        raise ValueError(f"expected three integers of at most {_C_INT_MAX}")
    return value


def _max_doc_bytes(value: int) -> int:
    if value != 0 and value < doc_size.MIN_MAX_DOC_BYTES:
        raise ValueError(f"must be 0 (no bound) or at least {doc_size.MIN_MAX_DOC_BYTES} bytes")
    return value


def _frontier(value: str) -> str:
    value = value.strip()
    problem = frontier_problem(value) if value else None
    if problem is not None:
        raise ValueError(problem)
    return value


def _repo(value: str) -> str:
    from ptmspiders.github import RepoRef

    return RepoRef.parse(value, "HEAD").full_name


def _ref(value: str) -> str:
    from ptmspiders.github import RepoRef

    return RepoRef.parse("a/b", value).ref


HubUrl = Annotated[str, AfterValidator(_http_url)]
# Longest wait a setting may name (about 116 days): ``inf`` or ``1e400`` overflowed a thread's
# timeout (``OverflowError`` in the store's writer, whose crawl then hung at its close).
MAX_SECONDS = 10**7
Seconds = Annotated[float, Field(gt=0, le=MAX_SECONDS)]
Wait = Annotated[float, Field(ge=0, le=MAX_SECONDS)]  # seconds, where 0 means no wait
Lease = Annotated[float, Field(ge=3, le=MAX_SECONDS)]  # seconds, renewed every third of it
Count = Annotated[int, Field(ge=0)]
AtLeastOne = Annotated[int, Field(ge=1)]
Ratio = Annotated[float, Field(ge=0, le=1)]
Repo = Annotated[str, AfterValidator(_repo)]
Ref = Annotated[str, AfterValidator(_ref)]


def _folder(value: str) -> str:
    if not value.strip():  # Path("") is the current folder: blobs landed wherever one stood
        raise ValueError("empty: name a folder")
    return value


def _packages_dir(value: str) -> str:
    _folder(value)
    if value.startswith("s3://"):
        from ptmspiders.packages.blobs import S3Location

        S3Location.parse(value)  # its ValueError names the expected form
    return value


PackagesDir = Annotated[str, AfterValidator(_packages_dir)]
Folder = Annotated[str, AfterValidator(_folder)]


def setting(default: Any, description: str, *, env: bool = False, secret: bool = False,
            **rules: Any) -> Any:
    """A field: its default, its line in docs/settings.md, whether the environment variable
    of its name is its fallback (``env``) and whether its value is kept out of messages."""
    return Field(default, description=description, json_schema_extra={"env": env,
                                                                       "secret": secret},
                 **rules)


class PtmSettings(BaseModel):
    """Every setting of the project, validated. Fields are the setting names, lower-case and
    without the ``PTM_`` prefix (``PTM_STORE_URI`` is ``store_uri``)."""

    model_config = ConfigDict(alias_generator=setting_name, frozen=True, extra="ignore",
                              validate_by_alias=True, validate_by_name=True)

    # -- hub endpoints (see docs/hubs.md; which hub is read at which: ptmspiders/hubs.py) ----
    hf_endpoint: HubUrl = setting("https://huggingface.co", "Hugging Face Hub (the variable "
                                  "`huggingface_hub` reads)", env=True)
    github_api_url: HubUrl = setting("https://api.github.com", "GitHub's REST API: git trees "
                                     "of catalogue repositories", env=True)
    github_raw_url: HubUrl = setting("https://raw.githubusercontent.com", "catalogue files "
                                     "(not counted against the REST quota)", env=True)
    modelzoo_url: HubUrl = setting("https://modelzoo.co", "modelzoo.co", env=True)
    kaggle_api_url: HubUrl = setting("https://www.kaggle.com/api/v1", "Kaggle's API", env=True)
    tfhub_url: HubUrl = setting("https://tfhub.dev", "TF Hub Module archives "
                                "(`?tf-hub-format=compressed`) for the packages crawl; sent no "
                                "credential", env=True)
    github_media_url: HubUrl = setting("https://media.githubusercontent.com/media", "Git LFS "
                                       "files of catalogue repositories (ONNX Model Zoo "
                                       "packages); sent no credential", env=True)

    # -- the store (ptmspiders/stores, pipelines/store.py) -------------------------------------
    store_uri: str = setting("sqlite:///data/ptm.sqlite", "`sqlite:///relative/path`, "
                             "`sqlite:////absolute/path` or `mongodb://host:port/db` (see "
                             "[Stores](stores.md))", env=True, secret=True)
    store_enabled: bool = setting(True, "off: feed exports only")
    # Each batch costs the writer thread a few hand-overs of the GIL from the crawl's thread
    # (one per SQLite call), about 11 ms of waiting per batch while the crawl's thread runs:
    # 1M sweep, writer busy 75 s with 500 per batch, 62 s with 1,000, its CPU 37 s in both;
    # peak RSS 279 -> 312 MB (docs/performance.md, "The SQLite store").
    store_batch_size: AtLeastOne = setting(1000, "documents per batch handed to the writer (one "
                                           "bulk write; one history lookup)")
    store_flush_seconds: Seconds = setting(5.0, "buffered documents are handed over, and the "
                                           "writer commits, at least this often")
    # Fewer, larger SQLite commits cost less per model at hub scale: each commit writes every
    # index page its batches touched, and at 1M models a 5,000-model commit touches about a third
    # of each random index (scripts/bench_store.py --transaction). 50,000 is about as many as a
    # sweep stores in PTM_STORE_FLUSH_SECONDS, which bounds a commit's age whatever the size.
    store_transaction_size: AtLeastOne = setting(50_000, "SQLite: documents per commit by the "
                                                 "writer (batches count as stored once "
                                                 "committed)")
    # A process: the writer's SQLite calls no longer wait for the GIL behind the crawl's thread,
    # and it can queue more batches; 1M sweep, back to back, 11,374 models/s with a thread,
    # 13,175 with a process (docs/performance.md, "The writer's process").
    store_writer: StoreWriterMode = setting(
        "process", "where batches are written: `process` (SQLite files: a process of its own; "
        "other stores: a thread), `thread` (a thread beside the crawl's) or `inline` (in the "
        "pipeline)")
    store_writer_max_pending: AtLeastOne | None = setting(
        None, "batches queued for the writer before the crawl waits (stat "
        "`ptm/store/wait_seconds`); unset: 12 for a writer process, 2 for a thread")
    max_doc_bytes: Annotated[int, AfterValidator(_max_doc_bytes)] = setting(
        doc_size.DEFAULT_MAX_DOC_BYTES, "documents over this many bytes of JSON are cut, marked "
        "in `extra.truncated` and counted (`0`: no bound; see [Security](security.md))")

    # -- Hugging Face ------------------------------------------------------------------------
    hf_owners: Annotated[OwnerMode, BeforeValidator(owners_mode)] = setting(
        DEFAULT_OWNER_MODE, "owner look-ups: `orgs` (one call per owner), `full` (user "
        "overviews too) or `off`, as the `owners` argument")
    reaim_enabled: bool = setting(True, "with `owners=full`, re-aim queued owner look-ups at "
                                  "the organisations' endpoint for names a user overview listed "
                                  "since (ptmspiders/middlewares/queued_rewrite.py)")
    hf_page_size: Annotated[int, Field(ge=1, le=HF_MAX_PAGE_SIZE)] = setting(
        HF_MAX_PAGE_SIZE, "models per list call (the Hub's maximum keeps a sweep near one call "
        "per 1000 models)")
    # Off by default so a plain sweep stays about one call per 1000 models; the studies
    # (ptm report) want all three.
    hf_cards: bool = setting(False, "enrich changed models with their card (see "
                             "[Studies](studies.md))")
    hf_files: bool = setting(False, "enrich changed models with the file tree and security "
                             "scans")
    hf_commits: bool = setting(False, "enrich changed models with their commits and signature "
                               "status")
    hf_signature_method: Annotated[str, BeforeValidator(_stripped_lower),
                                   _one_of(SIGNATURE_METHODS)] = setting(
        "git", "`git` (weightless clone, `git log %G?`), `html` (the commits page's badge) or "
        "`api` (no signatures): how commit signatures are read")
    hf_gnupghome: str = setting("", "GnuPG keyring that checks signatures (empty: a throwaway "
                                "keyring per crawl, removed at its end; `~/.gnupg` is never "
                                "used)", env=True)
    hf_git_concurrency: AtLeastOne = setting(2, "clones at a time")
    hf_git_timeout: Seconds = setting(300.0, "seconds per git command")
    hf_commits_max: Count = setting(1000, "commits read per model (0: the whole history)")

    # -- other hubs --------------------------------------------------------------------------
    kaggle_page_size: Annotated[int, Field(ge=1, le=KAGGLE_MAX_PAGE_SIZE)] = setting(
        KAGGLE_MAX_PAGE_SIZE, "Kaggle Models per list page")
    chromium_path: str = setting("/usr/bin/chromium", "modelzoo.co: the Chromium that renders "
                                 "model pages the JSON API refuses (scrapy-playwright)", env=True)
    modelzoo_browser: bool = setting(True, "modelzoo.co: the browser fallback")
    modelzoo_render_timeout: Seconds = setting(30.0, "seconds a model page may take to render")
    # A refusal there is seldom transient and the fallback is at hand.
    modelzoo_api_retries: Count = setting(2, "retries of a modelzoo API answer (5xx, HTML or "
                                          "malformed JSON) before the browser fallback (at most "
                                          "`PTM_RETRY_TIMES`)")
    pytorch_hub_repo: Repo = setting("pytorch/hub", "PyTorch Hub's catalogue repository")
    pytorch_hub_ref: Ref = setting("master", "its branch, tag or commit")
    onnx_zoo_repo: Repo = setting("onnx/models", "ONNX Model Zoo's catalogue repository")
    onnx_zoo_ref: Ref = setting("main", "its branch, tag or commit")
    tfhub_repo: Repo = setting("tensorflow/tfhub.dev", "TF Hub's catalogue repository")
    tfhub_ref: Ref = setting("master", "its branch, tag or commit")
    modelhub_repo: Repo = setting("modelhub-ai/modelhub", "Modelhub's catalogue repository")
    modelhub_ref: Ref = setting("master", "its branch, tag or commit")

    # -- model packages (scrapy crawl packages, ptmspiders/packages) -------------------------
    packages_dir: PackagesDir = setting(
        "data/packages", "where `scrapy crawl packages` keeps blobs and package folders: a "
        "folder, or `s3://bucket/prefix` (see [Packages](packages.md#object-storage))", env=True)
    packages_staging_dir: Folder = setting(
        "data/packages-staging", "with an `s3://` destination: the local folder of transfers "
        "in progress (resumed from there)", env=True)
    packages_concurrency: AtLeastOne = setting(8, "file transfers at once (worker threads)")
    packages_concurrent_packages: AtLeastOne = setting(16, "packages in progress at once")
    packages_inline_max_bytes: AtLeastOne = setting(16 * 1024 * 1024, "small git files up to "
                                                    "this size come through Scrapy (in memory), "
                                                    "larger ones stream")
    packages_progress_interval: Seconds = setting(60.0, "seconds between progress lines")
    packages_retry_wait: Wait = setting(
        1.0, "seconds before a failed transfer is tried again")
    packages_bandwidth: Annotated[float, Field(ge=0, allow_inf_nan=False)] = setting(
        0.0, "bytes/s of streamed transfers per worker (0: no cap)")
    packages_archive_max_bytes: AtLeastOne = setting(
        256 << 30, "an archive (GitHub tarball, Kaggle or TF Hub) unpacking to more bytes than "
        "this is refused whole (`archive_too_large`)")
    packages_archive_max_members: AtLeastOne = setting(
        100_000, "an archive with more members than this is refused whole "
        "(`archive_too_many_members`)")

    # -- requests: credentials, origins, rate limits, retries --------------------------------
    auth_enabled: bool = setting(True, "attach hub credentials (read from the environment only, "
                                 "see below)")
    same_origin_redirects_enabled: bool = setting(True, "refuse a hub API request redirected to "
                                                  "another origin (`ptm/refused_link`)")
    ratelimit_enabled: bool = setting(True, "pace each hub by its published budget per bucket "
                                      "(see [Rate limits](rate-limits.md))")
    hf_tier: Annotated[str, BeforeValidator(_stripped_lower), _one_of(("", *HF_TIERS))] = setting(
        "", "Hugging Face tier: `anonymous`, `free`, `pro`, `team` or `enterprise`; empty: "
        "`free` with `HF_TOKEN`, else `anonymous`", env=True)
    hf_quotas: Annotated[dict[str, int], BeforeValidator(_json_object),
                         AfterValidator(_hf_quotas)] = setting(
        {}, "quotas of single Hugging Face buckets over the tier's, e.g. `{\"api\": 2500}`")
    hf_window: Seconds = setting(HUGGINGFACE_API.window, "seconds of a Hugging Face window")
    github_quota: Count = setting(0, "GitHub REST calls per window (0: GitHub's own, 5000/hour "
                                  "with `GITHUB_TOKEN`, else 60)")
    github_window: Seconds = setting(GITHUB_API.window, "seconds of a GitHub window")
    kaggle_quota: Count = setting(60, "Kaggle calls per window: Kaggle publishes no number, so "
                                  "a cautious guess (0: unpaced)")
    kaggle_window: Seconds = setting(KAGGLE_API.window, "seconds of a Kaggle window")
    ratelimit_burst: Ratio = setting(0.5, "share of a window's quota that may go out at once; "
                                     "the rest is spread over the window")
    ratelimit_max_waits: AtLeastOne = setting(20, "429 waits per request before it is given up "
                                              "(and counted)")
    ratelimit_default_wait: Seconds = setting(60.0, "seconds waited on a 429 that names no "
                                              "reset time")
    ratelimit_min_wait: Wait = setting(1.0, "shortest wait on a 429")
    frontier: Annotated[str, AfterValidator(_frontier)] = setting(
        "", "`redis://host:port/db`: workers share the hubs' rate-limit windows in Redis (see "
        "[Scaling out](scaling-out.md)); empty: each crawl paces itself; with it, "
        "`packages` and Hugging Face enrichment take their work from there", env=True, secret=True)
    frontier_idle_s: Wait = setting(
        30.0, "a frontier worker stops when no work was queued, nor being seeded or listed, "
        "for this many seconds", env=True)
    frontier_lease_s: Lease = setting(
        60.0, "a frontier worker renews its membership every third of this; one that stops "
        "(killed) counts as gone after this many seconds, and a run with no worker left is "
        "seeded anew by the next one to start")
    frontier_items: AtLeastOne = setting(
        16, "`hf_models` with enrichment on a frontier: models a worker enriches at a time")
    # These stand for Scrapy's RETRY_ENABLED, RETRY_TIMES and RETRY_HTTP_CODES (refused if
    # set); RETRY_EXCEPTIONS, RETRY_PRIORITY_ADJUST and RETRY_GIVE_UP_LOG_LEVEL apply as in
    # Scrapy.
    retry_enabled: bool = setting(True, "retries (ptmspiders/middlewares/retry.py), in place of "
                                  "Scrapy's `RETRY_ENABLED`")
    retry_times: Count = setting(5, "retries per request, in place of `RETRY_TIMES`")
    retry_http_codes: Annotated[list[int], BeforeValidator(_split),
                                AfterValidator(_retry_codes)] = setting(
        [500, 502, 503, 504, 522, 524, 408], "statuses retried, in place of `RETRY_HTTP_CODES` "
        "(never 429: rate limits are waited out)")
    retry_backoff_base: Wait = setting(
        1.0, "seconds before the first retry, doubled each time (half jittered)")
    retry_backoff_max: Wait = setting(
        60.0, "the longest wait between retries")

    # -- history, locks, health, resuming ----------------------------------------------------
    history_enabled: bool = setting(True, "`crawls` and `changes` records, `removed_at` (needs "
                                    "the store; see [History](history.md))")
    history_max_missing_ratio: Annotated[float, Field(gt=0, le=1)] = setting(
        0.5, "a complete crawl missing more than this share of its hub's models marks none "
        "removed (stat `ptm/history/removals_refused`)")
    lock_enabled: bool = setting(True, "one listing crawl of a hub per store (see "
                                 "[Security](security.md))")
    lock_wait: Wait = setting(30.0, "seconds to wait for another crawl's lock before "
                              "refusing (exit 4)")
    lock_ttl: Lease = setting(
        120.0, "seconds a lock lives without its holder's heartbeat")
    health_max_failed_requests: Count = setting(0, "crawl health fails when a "
                                                "`ptm/failed/<reason>` count is over this")
    health_max_dropped_ratio: Ratio = setting(0.1, "crawl health fails when one "
                                              "`ptm/dropped/<reason>` is over this share of the "
                                              "items")
    health_max_refused_links: Count = setting(0, "crawl health fails when `ptm/refused_link` "
                                              "is over this")
    killed_run_recovery_enabled: bool = setting(True, "with `JOBDIR`: after a killed run, "
                                                "discard Scrapy's queue and `requests.seen` "
                                                "(see [Resuming a killed crawl](rate-limits.md"
                                                "#resuming-a-killed-crawl))")

    # -- the speed work (ptmspiders/perf) ----------------------------------------------------
    # One switch per piece; what each gains: docs/performance.md.
    perf_gc: bool = setting(True, "raise the garbage collector's thresholds (below) and freeze "
                            "start-up objects during a crawl (stats `ptm/gc/*`)")
    perf_item_count: bool = setting(True, "count scraped items in the item processor instead "
                                    "of a receiver of the `item_scraped` signal")
    perf_log_formatter: bool = setting(True, "build no per-item/per-response DEBUG records "
                                       "when the log level hides them")
    perf_decode_once: bool = setting(True, "a list page checked by the retry middleware is "
                                     "decoded once, not again by the spider")
    gc_thresholds: Annotated[tuple[int, int, int], BeforeValidator(_three),
                             AfterValidator(_gc_thresholds)] = setting(
        (50_000, 20, 10), "`gc.set_threshold` during a crawl (CPython's default is 700, 10, 10)")
    gc_freeze: bool = setting(True, "`gc.freeze()` what start-up allocated, so full "
                              "collections skip it")


    @model_validator(mode="after")
    def _rules_across_settings(self) -> PtmSettings:
        if self.retry_backoff_base > self.retry_backoff_max:
            raise ValueError("PTM_RETRY_BACKOFF_BASE must be <= PTM_RETRY_BACKOFF_MAX")
        return self

    # -- reading -------------------------------------------------------------------------------
    @classmethod
    def from_settings(cls, settings: BaseSettings | Mapping[str, Any],
                      env: Mapping[str, str] | None = None) -> PtmSettings:
        """The settings of ``settings`` (Scrapy's), with the environment as the fallback of
        *env* settings; a :class:`SettingsError` of one line if a value breaks its rule."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for field, info in cls.model_fields.items():
            name = setting_name(field)
            value: Any = settings.get(name)
            if value is None and _extra(info, "env"):
                value = env.get(name) or None
            if hasattr(value, "copy_to_dict"):  # a dict setting Scrapy keeps as BaseSettings
                value = value.copy_to_dict()
            if value is not None:
                values[name] = value
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise SettingsError(_one_line(exc, values)) from None

    def value(self, name: str) -> Any:
        """The value of the setting called ``name`` (for settings named in data, such as a
        hub's base-URL setting in ptmspiders/hubs.py)."""
        return getattr(self, _field(name))


def _extra(info: Any, key: str) -> bool:
    extra = info.json_schema_extra
    return bool(isinstance(extra, dict) and extra.get(key))


def _one_line(exc: ValidationError, values: Mapping[str, Any]) -> str:
    secret = {setting_name(f) for f, i in PtmSettings.model_fields.items() if _extra(i, "secret")}
    parts = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        if message[1:2].islower():  # pydantic's "Input should be ...", not a setting's name
            message = message[:1].lower() + message[1:]
        loc = error["loc"]
        if not loc:
            parts.append(message)
            continue
        name = str(loc[0])
        shown = values.get(name)
        if name in secret and isinstance(shown, str):
            shown = redacted(shown)
        parts.append(f"{name}={shown!r}: {message}")
    return "; ".join(parts).replace("\n", " ")


_BY_CRAWLER: weakref.WeakKeyDictionary[Crawler, PtmSettings] = weakref.WeakKeyDictionary()


def ptm_settings(crawler: Crawler) -> PtmSettings:
    """The crawl's settings, validated on first use and kept for the crawler's life (its
    settings are final by the time any component is built)."""
    found = _BY_CRAWLER.get(crawler)
    if found is None:
        found = _BY_CRAWLER[crawler] = PtmSettings.from_settings(crawler.settings)
    return found


def default(name: str) -> Any:
    """A setting's value outside a crawl (``ptm``): its environment variable (for an *env*
    setting), else its default."""
    info = PtmSettings.model_fields[_field(name)]
    if _extra(info, "env") and os.environ.get(name):
        return os.environ[name]
    return info.default


def _field(name: str) -> str:
    field = name.lower().removeprefix("ptm_")
    if setting_name(field) != name or field not in PtmSettings.model_fields:
        raise KeyError(name)
    return field


# -- docs/settings.md ------------------------------------------------------------------------------

def _rule(info: Any) -> str:
    words = []
    for meta in info.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            bound = getattr(meta, attr, None)
            if bound is not None:
                words.append(f"{sign} {bound}")
    return ", ".join(words)


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, dict | list | tuple):
        return json.dumps(value) if isinstance(value, dict) else ", ".join(map(str, value))
    if value == "":
        return "empty"
    return str(value)


def settings_table() -> str:
    """The table of every setting in docs/settings.md (between its settings markers)."""
    lines = ["| setting | default | rule | |", "|---|---|---|---|"]
    for field, info in PtmSettings.model_fields.items():
        name = f"`{setting_name(field)}`" + (" (also env)" if _extra(info, "env") else "")
        lines.append(f"| {name} | `{_shown(info.default)}` | {_rule(info)} | "
                     f"{info.description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(settings_table(), end="")
