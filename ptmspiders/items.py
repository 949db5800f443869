"""The stored documents (model, owner, collection, commit, package): one class each, the one
source of their shape.

Each class is a slotted dataclass whose fields carry pydantic types and constraints
(``Annotated[..., Field(...)]``, the registry's hub keys as a ``Literal``). Pydantic generates
the published JSON Schemas in ``ptmspiders/schema`` from them (``python -m ptmspiders.schema``; a
test fails when they drift) and validates an item with :func:`validate`; the crawl's
``ValidatePipeline`` checks each document against the generated schema (jsonschema-rs), once,
after normalisation, and drops invalid ones with a counted reason, so bad hub data never raises
in a spider callback. The parsers build items unchecked, since normalisation still rewrites
paper and GitHub URLs and dates into the form the schema asks for.

Dataclasses rather than pydantic ``BaseModel``: an item is built, read and edited about fifty
times per model on the crawl's thread, and a slotted dataclass does that ~5 us a model faster
than a ``BaseModel``'s dictionary (docs/performance.md, "Model layer"). itemadapter serves feed
exports and pipelines from them like any item. Nested objects are typed ``Doc`` for the code
that edits them and validated (and published) with the ``TypedDict`` shapes below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, NotRequired, TypeAlias

from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter
from typing_extensions import TypedDict

from ptmspiders.hubs import HUBS

Doc = dict[str, Any]

_HUB_ALTERNATIVES = "|".join(HUBS)
ID_PATTERN = rf"^({_HUB_ALTERNATIVES}):.+$"
SHA_PATTERN = r"[0-9a-f]{7,64}"
# RFC 3339 date-time (what JSON Schema's "format": "date-time" means).
# Patterns use [0-9], not \d: pydantic's regex engine reads \d as any Unicode digit.
DATE_TIME_PATTERN = (r"^[0-9]{4}-[01][0-9]-[0-3][0-9][Tt][0-2][0-9]:[0-5][0-9]:[0-6][0-9]"
                     r"(\.[0-9]+)?([Zz]|[+-][0-2][0-9]:[0-5][0-9])$")

NonNegative = Annotated[int, Field(ge=0)]
NonEmpty = Annotated[str, Field(min_length=1)]
DateTime = Annotated[str, Field(pattern=DATE_TIME_PATTERN, json_schema_extra={
    "format": "date-time"})]
Paper = Annotated[str, Field(pattern=r"^(arxiv|doi):.+$")]
GitHubRepo = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")]
HubId = Annotated[str, Field(pattern=ID_PATTERN)]
Raw = Annotated[Doc, Field(description="the hub's own payload, unchanged, for provenance")]


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("items are not unique")
    return values


if TYPE_CHECKING:
    Hub: TypeAlias = str
else:
    Hub = Literal[tuple(HUBS)]  # the registry's keys, in its order (tests/test_hubs.py)


# -- nested shapes -------------------------------------------------------------------------------

class _Shape(TypedDict):
    # Extra keys are allowed (and not checked), as in the published schemas.
    __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]


class Crawl(_Shape):
    """When and where the crawl saw the document."""

    first_seen: str
    last_seen: str
    source_url: str | None


class Security(_Shape, total=False):
    """The Hub's security scan of the file (tree API with expand)."""

    status: str | None
    virus_found: bool | None
    pickle_level: str | None
    risky_imports: list[str]


class File(_Shape):
    path: str
    size: NotRequired[NonNegative | None]
    sha256: NotRequired[str | None]
    lfs: NotRequired[bool]
    security: NotRequired[Security]


class Card(_Shape):
    present: bool | None
    has_model_index: bool
    length: NotRequired[Annotated[NonNegative, Field(description="characters of README.md")]]
    front_matter_keys: NotRequired[list[str]]
    front_matter_error: NotRequired[str]
    sections: NotRequired[Annotated[list[str], Field(description="markdown headings, in order")]]
    states_license: NotRequired[bool]
    states_datasets: NotRequired[bool]
    states_limitations: NotRequired[bool]
    states_evaluation: NotRequired[bool]


class Enrichment(_Shape, total=False):
    """Which enrichment steps ran for the stored sha (null: none), and gaps."""

    sha: str | None
    steps: list[Literal["card", "files", "commits"]]
    gaps: dict[str, str]


class Risk(_Shape):
    """Serialisation risk of the weight files (null: not computed)."""

    weight_formats: list[str]
    pickle_only: bool | None
    pickle_files: NotRequired[list[str]]
    scanned_files: NotRequired[NonNegative]
    unsafe_files: NotRequired[list[str]]


class Cut(_Shape):
    field: Annotated[str, Field(description="dotted path of the value cut or removed")]
    bytes: Annotated[NonNegative, Field(description="bytes of the document it took")]


class Extra(_Shape, total=False):
    """Hub-specific facts."""

    truncated: Annotated[list[Cut], Field(
        description="what was cut to fit PTM_MAX_DOC_BYTES (ptmspiders/doc_size.py)")]


class FileScan(_Shape, total=False):
    status: Literal["safe", "unsafe", "suspicious", "error"]
    globals: list[str]
    dangerous: list[str]
    scanner: str


class PackageFile(_Shape):
    path: str
    size: NonNegative | None
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None
    blob: Annotated[str, Field(pattern=r"^blobs/sha256/[0-9a-f]{2}/[0-9a-f]{64}$")] | None
    lfs: bool
    verified: bool
    status: Literal["downloaded", "present", "skipped", "refused", "failed"]
    reason: str | None
    scan: FileScan | None


class PackageScan(_Shape, total=False):
    scanned: NonNegative
    unsafe: NonNegative
    suspicious: NonNegative
    errors: NonNegative


if TYPE_CHECKING:  # the code that builds and edits them sees plain dictionaries and strings
    CrawlDoc: TypeAlias = Doc
    CardDoc: TypeAlias = Doc
    ExtraDoc: TypeAlias = Doc
    ScanDoc: TypeAlias = Doc
    FilesDoc: TypeAlias = list[Doc]
    PackageFilesDoc: TypeAlias = list[Doc]
    RiskDoc: TypeAlias = Doc | None
    EnrichmentDoc: TypeAlias = Doc | None
    OwnerKind: TypeAlias = str
    Signature: TypeAlias = str
    SignatureMethod: TypeAlias = str
else:
    CrawlDoc, CardDoc, ExtraDoc = Crawl, Card, Extra
    FilesDoc, PackageFilesDoc = list[File], list[PackageFile]
    RiskDoc, EnrichmentDoc = Risk | None, Enrichment | None
    ScanDoc = PackageScan
    OwnerKind = Literal["org", "user", "unknown"]
    Signature = Literal["good", "bad", "unsigned", "unknown"]  # see signatures.py
    SignatureMethod = Literal["git", "html", "api"]


# -- documents -----------------------------------------------------------------------------------

# Strict: a hub's "5" is not a count; revalidated: validate() checks an existing item's values.
_CONFIG = ConfigDict(strict=True, revalidate_instances="always")


@dataclass(slots=True, kw_only=True)
class _HubEntry:
    """The identity fields every model and collection document starts with."""

    _id: HubId
    hub: Hub
    hub_id: NonEmpty
    name: NonEmpty
    owner: str | None = None
    url: str | None = None


@dataclass(slots=True, kw_only=True)
class ModelItem(_HubEntry):
    """One model package on one hub (collection ``models``)."""

    collection: ClassVar[str] = "models"
    schema_name: ClassVar[str] = "model"
    schema_title: ClassVar[str] = "PTM model package"
    schema_description: ClassVar[str] = ("One pre-trained model package on one hub, normalised "
                                         "so one query spans all hubs.")
    __pydantic_config__: ClassVar[ConfigDict] = _CONFIG

    owner_url: str | None = None
    hub_uid: str | None = None
    title: str | None = None
    description: str | None = None
    tasks: list[str] = field(default_factory=list)
    libraries: list[str] = field(default_factory=list)
    architectures: list[str] = field(default_factory=list)
    model_type: str | None = None
    tags: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    base_models: list[str] = field(default_factory=list)
    papers: list[Paper] = field(default_factory=list)
    github_repos: list[GitHubRepo] = field(default_factory=list)
    license: str | None = None
    downloads: NonNegative | None = None
    downloads_all_time: NonNegative | None = None
    likes: NonNegative | None = None
    created_at: DateTime | None = None
    last_modified: DateTime | None = None
    latest_commit_sha: str | None = None
    gated: bool | None = None
    gated_mode: str | None = None
    private: bool | None = None
    disabled: bool | None = None
    parameters: NonNegative | None = None
    used_storage: NonNegative | None = None
    files: FilesDoc = field(default_factory=list)
    card: CardDoc = field(default_factory=lambda: {"present": None, "has_model_index": False})
    risk: RiskDoc = None
    enrichment: EnrichmentDoc = None
    # Set by a complete crawl that no longer saw the model (history.py); never deleted.
    removed_at: Annotated[DateTime | None, Field(description=(
        "when a complete crawl of the hub no longer saw the model (null: listed)"))] = None
    extra: ExtraDoc = field(default_factory=dict)
    raw: Raw = field(default_factory=dict)
    crawl: CrawlDoc = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class OwnerItem:
    """An organisation or user that publishes models (collection ``owners``)."""

    collection: ClassVar[str] = "owners"
    schema_name: ClassVar[str] = "owner"
    schema_title: ClassVar[str] = "PTM hub owner"
    schema_description: ClassVar[str] = "An organisation or user that publishes models on a hub."
    __pydantic_config__: ClassVar[ConfigDict] = _CONFIG

    _id: HubId
    hub: Hub
    name: NonEmpty
    type: OwnerKind = "unknown"
    fullname: str | None = None
    url: str | None = None
    is_verified: bool | None = None
    is_pro: bool | None = None
    plan: str | None = None
    num_models: NonNegative | None = None
    num_users: NonNegative | None = None
    num_followers: NonNegative | None = None
    # A user's organisations, as the user's overview lists them (who may push to whose models).
    orgs: Annotated[list[NonEmpty], AfterValidator(_unique), Field(
        json_schema_extra={"uniqueItems": True})] = field(default_factory=list)
    extra: ExtraDoc = field(default_factory=dict)
    raw: Raw = field(default_factory=dict)
    crawl: CrawlDoc = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class CollectionItem(_HubEntry):
    """A curated group of models on a hub (collection ``collections``), e.g. a TF Hub
    Collection; ``members`` are the hub's own model handles as the hub lists them."""

    collection: ClassVar[str] = "collections"
    schema_name: ClassVar[str] = "collection"
    schema_title: ClassVar[str] = "PTM hub collection"
    schema_description: ClassVar[str] = ("A curated group of models on a hub (e.g. a TF Hub "
                                         "Collection); members are the hub's model handles.")
    __pydantic_config__: ClassVar[ConfigDict] = _CONFIG

    title: str | None = None
    description: str | None = None
    members: list[NonEmpty] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    architectures: list[str] = field(default_factory=list)
    papers: list[Paper] = field(default_factory=list)
    extra: ExtraDoc = field(default_factory=dict)
    raw: Raw = field(default_factory=dict)
    crawl: CrawlDoc = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class CommitItem:
    """One commit of a model repository (collection ``commits``); ``_id`` is
    ``<model _id>@<sha>``. ``signature`` is good|bad|unsigned|unknown (see signatures.py)."""

    collection: ClassVar[str] = "commits"
    schema_name: ClassVar[str] = "commit"
    schema_title: ClassVar[str] = "Model repository commit"
    schema_description: ClassVar[str] = (
        "One commit of a model repository with its signature status (see "
        "ptmspiders/signatures.py for how git's %G? codes map to the status).")
    __pydantic_config__: ClassVar[ConfigDict] = _CONFIG

    _id: Annotated[str, Field(pattern=rf"^({_HUB_ALTERNATIVES}):.+@{SHA_PATTERN}$")]
    hub: Hub
    model: Annotated[str, Field(description="_id of the model document")]
    sha: Annotated[str, Field(pattern=rf"^{SHA_PATTERN}$")]
    date: DateTime | None = None
    authors: list[str] = field(default_factory=list)
    title: str | None = None
    signature: Signature = "unknown"
    signed: Annotated[bool | None, Field(
        description="null when the method cannot tell (api)")] = None
    signer: str | None = None
    signing_key: str | None = None
    signature_code: Annotated[str | None, Field(description="git's %G? letter")] = None
    signature_method: SignatureMethod = "api"
    crawl: CrawlDoc = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class PackageItem:
    """The files of one model at one revision, as downloaded (collection ``packages``);
    ``_id`` is the model's ``_id``. See ``ptmspiders/packages``."""

    collection: ClassVar[str] = "packages"
    schema_name: ClassVar[str] = "package"
    schema_title: ClassVar[str] = "PTM package: the files of one model at one revision"
    schema_description: ClassVar[str] = "The files of one model at one revision, as downloaded."
    __pydantic_config__: ClassVar[ConfigDict] = _CONFIG

    _id: HubId
    hub: Hub
    hub_id: NonEmpty
    revision: str | None
    source_url: str | None = None
    # The package folder, relative to dest: <hub>/<owner>/<name>/<revision>.
    path: str | None = None
    files: PackageFilesDoc = field(default_factory=list)
    bytes: NonNegative = 0
    new_bytes: NonNegative = 0
    complete: bool = False
    downloaded_at: DateTime | None = None
    scan: ScanDoc = field(default_factory=dict)
    reason: str | None = None
    crawl: Doc = field(default_factory=dict)


Document = ModelItem | OwnerItem | CollectionItem | CommitItem | PackageItem

DOCUMENTS: dict[str, type[Document]] = {
    cls.schema_name: cls for cls in (ModelItem, OwnerItem, CollectionItem, CommitItem, PackageItem)}
"""Every document class by schema name."""


_ADAPTERS: dict[str, TypeAdapter[Any]] = {}


def adapter(cls: type[Document]) -> TypeAdapter[Any]:
    """Pydantic's view of a document class: its JSON Schema and its validator."""
    found = _ADAPTERS.get(cls.schema_name)
    if found is None:
        found = _ADAPTERS[cls.schema_name] = TypeAdapter(cls)
    return found


def validate(item: Document) -> None:
    """Raise pydantic's ``ValidationError`` unless every value of ``item`` is valid."""
    adapter(type(item)).validate_python(item)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


_BUILDERS: dict[type, Callable[[Any], Doc]] = {}


def _builder(cls: type) -> Callable[[Any], Doc]:
    """A function made for ``cls`` that returns ``{"_id": item._id, ...}`` in field order,
    as ``dataclasses`` makes ``__init__``: one dict display of plain attribute reads, 2.7 us
    a model where ``dict(zip(names, attrgetter(*names)(item)))`` took 3.3
    (``scripts/bench_documents.py``; docs/performance.md, "The crawl's own stages")."""
    build = _BUILDERS.get(cls)
    if build is None:
        names = field_names(cls)
        if not all(name.isidentifier() for name in names):
            raise TypeError(f"{cls.__name__}: a field name is not an identifier")
        body = ", ".join(f"{name!r}: item.{name}" for name in names)
        namespace: dict[str, Any] = {}
        exec(f"def to_doc(item):\n    return {{{body}}}\n", namespace)
        build = _BUILDERS[cls] = namespace["to_doc"]
    return build


def to_doc(item: Any) -> Doc:
    """Shallow dict of an item: ``dataclasses.asdict`` deep-copies ``raw``, which costs."""
    if isinstance(item, dict):
        return item
    return _builder(type(item))(item)


def make_id(hub: str, hub_id: str) -> str:
    return f"{hub}:{hub_id}"
