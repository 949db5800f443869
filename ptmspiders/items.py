"""Typed items that mirror the JSON Schemas in ``ptmspiders/schema``.

Dataclasses rather than ``scrapy.Item``: attribute access is cheap on the hot path, mypy checks
every parser, and itemadapter lets feed exports and pipelines treat them like any item.
``tests/test_items.py`` keeps the field lists and the schema files in step.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

Doc = dict[str, Any]


@dataclass(slots=True, kw_only=True)
class ModelItem:
    """One model package on one hub (collection ``models``)."""

    collection: ClassVar[str] = "models"
    schema_name: ClassVar[str] = "model"

    _id: str
    hub: str
    hub_id: str
    name: str
    owner: str | None = None
    url: str | None = None
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
    papers: list[str] = field(default_factory=list)
    github_repos: list[str] = field(default_factory=list)
    license: str | None = None
    downloads: int | None = None
    downloads_all_time: int | None = None
    likes: int | None = None
    created_at: str | None = None
    last_modified: str | None = None
    latest_commit_sha: str | None = None
    gated: bool | None = None
    gated_mode: str | None = None
    private: bool | None = None
    disabled: bool | None = None
    parameters: int | None = None
    used_storage: int | None = None
    files: list[Doc] = field(default_factory=list)
    card: Doc = field(default_factory=lambda: {"present": None, "has_model_index": False})
    risk: Doc | None = None
    enrichment: Doc | None = None
    # Set by a complete crawl that no longer saw the model (history.py); never deleted.
    removed_at: str | None = None
    extra: Doc = field(default_factory=dict)
    raw: Doc = field(default_factory=dict)
    crawl: Doc = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class OwnerItem:
    """An organisation or user that publishes models (collection ``owners``)."""

    collection: ClassVar[str] = "owners"
    schema_name: ClassVar[str] = "owner"

    _id: str
    hub: str
    name: str
    type: str = "unknown"
    fullname: str | None = None
    url: str | None = None
    is_verified: bool | None = None
    is_pro: bool | None = None
    plan: str | None = None
    num_models: int | None = None
    num_users: int | None = None
    num_followers: int | None = None
    # A user's organisations, as the user's overview lists them (who may push to whose models).
    orgs: list[str] = field(default_factory=list)
    extra: Doc = field(default_factory=dict)
    raw: Doc = field(default_factory=dict)
    crawl: Doc = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class CollectionItem:
    """A curated group of models on a hub (collection ``collections``), e.g. a TF Hub
    Collection; ``members`` are the hub's own model handles as the hub lists them."""

    collection: ClassVar[str] = "collections"
    schema_name: ClassVar[str] = "collection"

    _id: str
    hub: str
    hub_id: str
    name: str
    owner: str | None = None
    url: str | None = None
    title: str | None = None
    description: str | None = None
    members: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    architectures: list[str] = field(default_factory=list)
    papers: list[str] = field(default_factory=list)
    extra: Doc = field(default_factory=dict)
    raw: Doc = field(default_factory=dict)
    crawl: Doc = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class CommitItem:
    """One commit of a model repository (collection ``commits``); ``_id`` is
    ``<model _id>@<sha>``. ``signature`` is good|bad|unsigned|unknown (see signatures.py)."""

    collection: ClassVar[str] = "commits"
    schema_name: ClassVar[str] = "commit"

    _id: str
    hub: str
    model: str
    sha: str
    date: str | None = None
    authors: list[str] = field(default_factory=list)
    title: str | None = None
    signature: str = "unknown"
    signed: bool | None = None
    signer: str | None = None
    signing_key: str | None = None
    signature_code: str | None = None
    signature_method: str = "api"
    crawl: Doc = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class PackageItem:
    """The files of one model at one revision, as downloaded (collection ``packages``);
    ``_id`` is the model's ``_id``. See ``ptmspiders/packages``."""

    collection: ClassVar[str] = "packages"
    schema_name: ClassVar[str] = "package"

    _id: str
    hub: str
    hub_id: str
    revision: str | None
    source_url: str | None = None
    # The package folder, relative to dest: <hub>/<owner>/<name>/<revision>.
    path: str | None = None
    files: list[Doc] = field(default_factory=list)
    bytes: int = 0
    new_bytes: int = 0
    complete: bool = False
    downloaded_at: str | None = None
    scan: Doc = field(default_factory=dict)
    reason: str | None = None
    crawl: Doc = field(default_factory=dict)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


_READERS: dict[type, Callable[[Any], tuple[Any, ...]]] = {}


def _reader(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    """All field values of an instance in one ``attrgetter`` call (as a tuple, even for one)."""
    reader = _READERS.get(cls)
    if reader is None:
        names = field_names(cls)
        get = operator.attrgetter(*names)
        reader = _READERS[cls] = get if len(names) > 1 else (lambda item: (get(item),))
    return reader


def to_doc(item: Any) -> Doc:
    """Shallow dict of an item: ``dataclasses.asdict`` deep-copies ``raw``, which costs."""
    if isinstance(item, dict):
        return item
    cls = type(item)
    return dict(zip(field_names(cls), _reader(cls)(item), strict=True))


def make_id(hub: str, hub_id: str) -> str:
    return f"{hub}:{hub_id}"
