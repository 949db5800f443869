"""The one small interface every store speaks.

Spiders never talk to a store; pipelines, the ``ptm`` command and the reports do. Documents are
plain dicts keyed by ``_id``. An upsert replaces the stored document whole, except that
``crawl.first_seen`` keeps its first value, so a recrawl updates and never duplicates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

Doc = dict[str, Any]

COLLECTIONS: tuple[str, ...] = ("models", "owners", "collections")

# Indexed in every backend: what the studies and ``ptm query`` filter and sort on most.
INDEXED_FIELDS: dict[str, tuple[str, ...]] = {
    "models": ("hub", "owner", "last_modified", "downloads"),
    "owners": ("hub",),
    "collections": ("hub",),
}


class StoreError(RuntimeError):
    """A store that cannot be opened or written; the message names the URI without secrets."""


class Store(ABC):
    uri: str

    @abstractmethod
    def upsert(self, collection: str, docs: Sequence[Doc]) -> int:
        """Insert or replace ``docs`` by ``_id``, keeping ``crawl.first_seen``; returns count."""

    @abstractmethod
    def get(self, collection: str, _id: str) -> Doc | None: ...

    @abstractmethod
    def get_many(self, collection: str, ids: Iterable[str],
                 fields: Sequence[str] | None = None) -> dict[str, Doc]:
        """Stored documents by ``_id`` (missing ids are absent); ``fields`` projects top-level."""

    @abstractmethod
    def find(self, collection: str, where: Mapping[str, Any] | None = None) -> Iterator[Doc]:
        """Documents whose (dotted) fields equal the given values, in ``_id`` order."""

    @abstractmethod
    def count(self, collection: str, where: Mapping[str, Any] | None = None) -> int: ...

    @abstractmethod
    def ids(self, collection: str, where: Mapping[str, Any] | None = None) -> set[str]: ...

    @abstractmethod
    def delete(self, collection: str, ids: Iterable[str]) -> int: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def redact_uri(uri: str) -> str:
    """The URI with any password replaced, for logs and errors."""
    scheme, sep, rest = uri.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return uri
    creds, _, host = rest.partition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
