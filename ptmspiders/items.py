"""The stored documents (model, owner, collection, commit, package) as pydantic models.

One class per document is the one source of its shape: the published JSON Schemas in
``ptmspiders/schema`` are generated from these classes (``python -m ptmspiders.schema``; a test
fails when they drift), and ``pipelines/validate.py`` validates documents against those.

The parsers build items *unchecked*, as cheaply as a dataclass (``__init__`` below), because the
normalising pipeline still rewrites some fields (paper and GitHub URLs, dates) into the form the
schema asks for; ``ValidatePipeline`` then validates each item's document once, after
normalisation, and drops the invalid ones with a counted reason. So bad hub data never raises
in a spider callback. Nested objects are typed ``Doc`` for the code that edits them and
validated (and published) with the ``TypedDict`` shapes below.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, KeysView
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, NotRequired, TypeAlias, cast

from itemadapter import ItemAdapter
from itemadapter.adapter import AdapterInterface, PydanticAdapter
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
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

class Document(BaseModel):
    """A stored document: ``collection`` is where it is stored, ``schema_name`` its schema."""

    model_config = ConfigDict(
        strict=True, validate_by_name=False, validate_by_alias=True, serialize_by_alias=True)

    collection: ClassVar[str]
    schema_name: ClassVar[str]
    schema_title: ClassVar[str]
    schema_description: ClassVar[str]
    doc_names: ClassVar[tuple[str, ...]]  # the document's keys, in order

    id: HubId = Field(alias="_id")

    @property
    def _id(self) -> str:
        return self.id

    # Plain attribute setting, as on a dataclass: pydantic's own __setattr__ (which validates
    # nothing here) cost ~1.3 us a model in the normalising pipeline's nine assignments.
    __setattr__ = object.__setattr__

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.doc_names = tuple(f.alias or n for n, f in cls.model_fields.items())
        init = _unchecked_init(cls)
        # ``model_validate`` must not go through this __init__: pydantic calls a custom one
        # unless it carries BaseModel.__init__'s marker.
        init.__pydantic_base_init__ = True  # type: ignore[attr-defined]
        type.__setattr__(cls, "__init__", init)


_MISSING: Any = object()


def _unchecked_init(cls: type[Document]) -> Callable[..., None]:
    """A keyword-only ``__init__`` that stores its arguments unchecked, generated as
    ``dataclasses`` does: as fast as a dataclass's, a TypeError for an unknown or missing
    field; the values are validated by ValidatePipeline once the item is normalised."""
    params, values = [], []
    env: dict[str, Any] = {"_MISSING": _MISSING, "_set": object.__setattr__}
    for name, info in cls.model_fields.items():
        arg = info.alias or name
        if info.is_required():
            params.append(arg)
            values.append(f"{name!r}: {arg}")
        elif info.default_factory is not None:
            env[f"_f_{name}"] = info.default_factory
            params.append(f"{arg}=_MISSING")
            values.append(f"{name!r}: _f_{name}() if {arg} is _MISSING else {arg}")
        else:
            env[f"_d_{name}"] = info.default
            params.append(f"{arg}=_d_{name}")
            values.append(f"{name!r}: {arg}")
    source = (
        f"def __init__(self, *, {', '.join(params)}):\n"
        f"    _set(self, '__dict__', {{{', '.join(values)}}})\n"
        "    _set(self, '__pydantic_fields_set__', set())\n"
        "    _set(self, '__pydantic_extra__', None)\n"
        "    _set(self, '__pydantic_private__', None)\n")
    exec(source, env)  # generated from the class's own field names
    init: Callable[..., None] = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = _unchecked_init.__doc__
    return init


class ModelItem(Document):
    """One model package on one hub (collection ``models``)."""

    collection: ClassVar[str] = "models"
    schema_name: ClassVar[str] = "model"
    schema_title: ClassVar[str] = "PTM model package"
    schema_description: ClassVar[str] = ("One pre-trained model package on one hub, normalised "
                                         "so one query spans all hubs.")

    hub: Hub
    hub_id: NonEmpty
    name: NonEmpty
    owner: str | None = None
    url: str | None = None
    owner_url: str | None = None
    hub_uid: str | None = None
    title: str | None = None
    description: str | None = None
    tasks: list[str] = Field(default_factory=list)
    libraries: list[str] = Field(default_factory=list)
    architectures: list[str] = Field(default_factory=list)
    model_type: str | None = None
    tags: list[str] = Field(default_factory=list)
    datasets: list[str] = Field(default_factory=list)
    base_models: list[str] = Field(default_factory=list)
    papers: list[Paper] = Field(default_factory=list)
    github_repos: list[GitHubRepo] = Field(default_factory=list)
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
    files: FilesDoc = Field(default_factory=list)
    card: CardDoc = Field(default_factory=lambda: {"present": None, "has_model_index": False})
    risk: RiskDoc = None
    enrichment: EnrichmentDoc = None
    # Set by a complete crawl that no longer saw the model (history.py); never deleted.
    removed_at: DateTime | None = Field(default=None, description=(
        "when a complete crawl of the hub no longer saw the model (null: listed)"))
    extra: ExtraDoc = Field(default_factory=dict)
    raw: Raw = Field(default_factory=dict)
    crawl: CrawlDoc = Field(default_factory=dict)


class OwnerItem(Document):
    """An organisation or user that publishes models (collection ``owners``)."""

    collection: ClassVar[str] = "owners"
    schema_name: ClassVar[str] = "owner"
    schema_title: ClassVar[str] = "PTM hub owner"
    schema_description: ClassVar[str] = "An organisation or user that publishes models on a hub."

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
        json_schema_extra={"uniqueItems": True})] = Field(default_factory=list)
    extra: ExtraDoc = Field(default_factory=dict)
    raw: Raw = Field(default_factory=dict)
    crawl: CrawlDoc = Field(default_factory=dict)


class CollectionItem(Document):
    """A curated group of models on a hub (collection ``collections``), e.g. a TF Hub
    Collection; ``members`` are the hub's own model handles as the hub lists them."""

    collection: ClassVar[str] = "collections"
    schema_name: ClassVar[str] = "collection"
    schema_title: ClassVar[str] = "PTM hub collection"
    schema_description: ClassVar[str] = ("A curated group of models on a hub (e.g. a TF Hub "
                                         "Collection); members are the hub's model handles.")

    hub: Hub
    hub_id: NonEmpty
    name: NonEmpty
    owner: str | None = None
    url: str | None = None
    title: str | None = None
    description: str | None = None
    members: list[NonEmpty] = Field(default_factory=list)
    tasks: list[str] = Field(default_factory=list)
    datasets: list[str] = Field(default_factory=list)
    architectures: list[str] = Field(default_factory=list)
    papers: list[Paper] = Field(default_factory=list)
    extra: ExtraDoc = Field(default_factory=dict)
    raw: Raw = Field(default_factory=dict)
    crawl: CrawlDoc = Field(default_factory=dict)


class CommitItem(Document):
    """One commit of a model repository (collection ``commits``); ``_id`` is
    ``<model _id>@<sha>``. ``signature`` is good|bad|unsigned|unknown (see signatures.py)."""

    collection: ClassVar[str] = "commits"
    schema_name: ClassVar[str] = "commit"
    schema_title: ClassVar[str] = "Model repository commit"
    schema_description: ClassVar[str] = (
        "One commit of a model repository with its signature status (see "
        "ptmspiders/signatures.py for how git's %G? codes map to the status).")

    id: Annotated[str, Field(pattern=rf"^({_HUB_ALTERNATIVES}):.+@{SHA_PATTERN}$")] = Field(
        alias="_id")
    hub: Hub
    model: str = Field(description="_id of the model document")
    sha: Annotated[str, Field(pattern=rf"^{SHA_PATTERN}$")]
    date: DateTime | None = None
    authors: list[str] = Field(default_factory=list)
    title: str | None = None
    signature: Signature = "unknown"
    signed: bool | None = Field(default=None,
                                description="null when the method cannot tell (api)")
    signer: str | None = None
    signing_key: str | None = None
    signature_code: str | None = Field(default=None, description="git's %G? letter")
    signature_method: SignatureMethod = "api"
    crawl: CrawlDoc = Field(default_factory=dict)


class PackageItem(Document):
    """The files of one model at one revision, as downloaded (collection ``packages``);
    ``_id`` is the model's ``_id``. See ``ptmspiders/packages``."""

    collection: ClassVar[str] = "packages"
    schema_name: ClassVar[str] = "package"
    schema_title: ClassVar[str] = "PTM package: the files of one model at one revision"
    schema_description: ClassVar[str] = "The files of one model at one revision, as downloaded."

    hub: Hub
    hub_id: NonEmpty
    revision: str | None
    source_url: str | None = None
    # The package folder, relative to dest: <hub>/<owner>/<name>/<revision>.
    path: str | None = None
    files: PackageFilesDoc = Field(default_factory=list)
    bytes: NonNegative = 0
    new_bytes: NonNegative = 0
    complete: bool = False
    downloaded_at: DateTime | None = None
    scan: ScanDoc = Field(default_factory=dict)
    reason: str | None = None
    crawl: Doc = Field(default_factory=dict)


DOCUMENTS: dict[str, type[Document]] = {
    cls.schema_name: cls for cls in (ModelItem, OwnerItem, CollectionItem, CommitItem, PackageItem)}
"""Every document class by schema name."""


def field_names(cls: type[Document]) -> tuple[str, ...]:
    """The document's keys, in order (``_id`` first)."""
    return cls.doc_names


def to_doc(item: Any) -> Doc:
    """The item's document: a shallow dict of its fields (``model_dump`` copies ``raw``)."""
    if isinstance(item, dict):
        return item
    doc = {"_id": item.id}
    doc.update(item.__dict__)
    del doc["id"]
    return doc


def make_id(hub: str, hub_id: str) -> str:
    return f"{hub}:{hub_id}"


def _attribute(key: str) -> str:
    return "id" if key == "_id" else key


class DocumentAdapter(PydanticAdapter):
    """itemadapter (feed exports) by the documents' own keys: ``_id``, not the attribute."""

    @classmethod
    def is_item_class(cls, item_class: type) -> bool:
        return issubclass(item_class, Document)

    @classmethod
    def get_field_names_from_class(cls, item_class: type) -> list[str] | None:
        return list(item_class.doc_names)  # type: ignore[attr-defined]

    @classmethod
    def get_field_meta_from_class(cls, item_class: type, field_name: str) -> MappingProxyType:
        return super().get_field_meta_from_class(item_class, _attribute(field_name))

    def field_names(self) -> KeysView[str]:
        return dict.fromkeys(self.item.doc_names).keys()

    def __getitem__(self, field_name: str) -> Any:
        return super().__getitem__(_attribute(field_name))

    def __setitem__(self, field_name: str, value: Any) -> None:
        super().__setitem__(_attribute(field_name), value)

    def __delitem__(self, field_name: str) -> None:
        super().__delitem__(_attribute(field_name))

    def __iter__(self) -> Any:
        return iter(self.item.doc_names)

    def __len__(self) -> int:
        return len(self.item.doc_names)


# itemadapter's documented extension point (a deque), checked before its PydanticAdapter.
if DocumentAdapter not in ItemAdapter.ADAPTER_CLASSES:
    cast("deque[type[AdapterInterface]]", ItemAdapter.ADAPTER_CLASSES).appendleft(DocumentAdapter)

