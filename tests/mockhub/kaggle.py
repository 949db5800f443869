"""Kaggle Models list API, as ``kaggle models list`` sees it (see ../shared/HUBS.md).

- ``GET /api/v1/models/list?search=&sortBy=&owner=&pageSize=&pageToken=`` ->
  ``{models[], nextPageToken, totalResults}``; ``nextPageToken`` is absent on the last page
  (proto3 JSON leaves out default values) and opaque to clients.
- Errors use the API's envelope ``{"code": 4xx, "message": ...}``.

Knobs for tests (``hub.kaggle``): ``credentials = (user, key)`` makes every call without that
basic auth answer 401; ``broken_pages`` (0-based page numbers) answer a truncated body;
``models`` may be edited (malformed entries are served as they are).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.mockhub.server import MockHub, MockRequest, MockResponse

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
SORTS = {"hotness", "download_count", "vote_count", "notebook_count", "publish_time",
         "create_time", "update_time"}


@dataclass
class KaggleCatalogue:
    models: list[Any] = field(default_factory=list)
    credentials: tuple[str, str] | None = None
    broken_pages: set[int] = field(default_factory=set)

    @classmethod
    def load(cls, folder: Path) -> KaggleCatalogue:
        path = folder / "models.json"
        return cls(models=json.loads(path.read_text()) if path.is_file() else [])

    def select(self, req: MockRequest) -> list[Any]:
        rows = list(self.models)
        search = (req.arg("search") or "").lower()
        owner = req.arg("owner")
        if search:
            rows = [m for m in rows if not isinstance(m, dict)
                    or search in str(m.get("ref", "")).lower()
                    or search in str(m.get("title", "")).lower()]
        if owner:
            rows = [m for m in rows if isinstance(m, dict) and m.get("author") == owner]
        if req.arg("sortBy") in ("publish_time", "create_time"):
            rows.sort(key=lambda m: str(m.get("publishTime", "")) if isinstance(m, dict) else "",
                      reverse=True)
        return rows


def error(code: int, message: str) -> MockResponse:
    return MockResponse.json({"code": code, "message": message}, status=code)


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def decode_token(token: str) -> int:
    text = base64.urlsafe_b64decode(token.encode()).decode()
    if not text.startswith("offset:"):
        raise ValueError(token)
    return int(text[7:])


def authorised(catalogue: KaggleCatalogue, req: MockRequest) -> bool:
    if catalogue.credentials is None:
        return True
    user, key = catalogue.credentials
    expected = "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()
    return req.headers.get("authorization") == expected


def list_models(hub: MockHub, req: MockRequest, m: re.Match[str]) -> MockResponse:
    catalogue: KaggleCatalogue = hub.kaggle  # type: ignore[attr-defined]
    if not authorised(catalogue, req):
        return error(401, "Unauthenticated")
    sort = req.arg("sortBy")
    if sort and sort not in SORTS:
        return error(400, f"Invalid sortBy: {sort}")
    try:
        size = int(req.arg("pageSize") or DEFAULT_PAGE_SIZE)
        offset = decode_token(req.arg("pageToken") or "") if req.arg("pageToken") else 0
    except ValueError:
        return error(400, "Invalid page size or page token")
    if not 1 <= size <= MAX_PAGE_SIZE:
        return error(400, f"pageSize must be between 1 and {MAX_PAGE_SIZE}")
    rows = catalogue.select(req)
    body: dict[str, Any] = {"models": rows[offset:offset + size], "totalResults": len(rows)}
    if offset + size < len(rows):
        body["nextPageToken"] = encode_token(offset + size)
    response = MockResponse.json(body)
    if offset // size in catalogue.broken_pages:
        response.body = response.body[: len(response.body) // 2]
    return response


def register(hub: MockHub) -> None:
    hub.kaggle = KaggleCatalogue.load(hub.fixtures / "kaggle")  # type: ignore[attr-defined]
    hub.route("GET", r"/api/v1/models/list", list_models)
