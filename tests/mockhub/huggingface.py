"""Hugging Face Hub API, as the real Hub answers it (see ../shared/HUBS.md and hubdata).

- ``GET /api/models``: ``limit`` (max 1000), ``search``, ``author``, ``filter`` (tags),
  ``pipeline_tag``, ``library``, ``sort`` + ``direction``, repeated ``expand``; cursor paging
  with an absolute ``Link: <...&cursor=...>; rel="next"``; no Link on the last page.
- ``GET /api/models/{repo_id}`` (and ``/revision/{rev}``): detail; renamed repos answer 307
  with a relative ``Location``.
- ``GET /api/organizations/{name}/overview`` and ``/api/users/{name}/overview``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from tests.mockhub.server import MockHub, MockRequest, MockResponse

EXPANDABLE = frozenset({
    "author", "baseModels", "cardData", "childrenModelCount", "config", "createdAt", "disabled",
    "downloads", "downloadsAllTime", "evalResults", "gated", "gguf", "inference",
    "inferenceProviderMapping", "lastModified", "library_name", "likes", "mask_token",
    "model-index", "pipeline_tag", "private", "resourceGroup", "safetensors", "sha", "siblings",
    "spaces", "tags", "transformersInfo", "trendingScore", "widgetData", "usedStorage",
})
# What the list answers without ``expand`` (the Hub's default projection).
LIST_DEFAULT = ("_id", "id", "likes", "trendingScore", "private", "downloads", "tags",
                "pipeline_tag", "library_name", "createdAt", "modelId")
MAX_LIMIT = 1000


@dataclass
class HfCatalogue:
    models: list[dict[str, Any]] = field(default_factory=list)
    organizations: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    renames: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path) -> HfCatalogue:
        if not folder.is_dir():
            return cls()
        owners = json.loads((folder / "owners.json").read_text())
        return cls(
            models=json.loads((folder / "models.json").read_text()),
            organizations=owners.get("organizations", {}),
            users=owners.get("users", {}),
            renames=json.loads((folder / "renames.json").read_text()),
        )

    def by_id(self, repo_id: str) -> dict[str, Any] | None:
        for m in self.models:
            if m["id"] == repo_id:
                return m
        return None

    def select(self, req: MockRequest) -> Sequence[dict[str, Any]]:
        """The models a list query matches, in the order the Hub would page them."""
        rows: list[dict[str, Any]] = self.models
        search = (req.arg("search") or "").lower()
        author = req.arg("author")
        tags = req.args("filter")
        pipeline_tag = req.arg("pipeline_tag")
        library = req.arg("library")
        if search:
            rows = [m for m in rows if search in m["id"].lower()]
        if author:
            rows = [m for m in rows if m["id"].split("/")[0] == author and "/" in m["id"]]
        for tag in tags:
            rows = [m for m in rows if tag in m.get("tags", []) or tag == m.get("library_name")]
        if pipeline_tag:
            rows = [m for m in rows if m.get("pipeline_tag") == pipeline_tag]
        if library:
            rows = [m for m in rows if m.get("library_name") == library
                    or library in m.get("tags", [])]
        sort = req.arg("sort")
        if sort:
            descending = req.arg("direction", "-1") == "-1"
            present = [m for m in rows if m.get(sort) is not None]
            missing = [m for m in rows if m.get(sort) is None]
            rows = sorted(present, key=lambda m: m[sort], reverse=descending) + missing
        return rows


def encode_cursor(offset: int) -> str:
    raw = json.dumps({"$offset": offset}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    padded = cursor + "=" * (-len(cursor) % 4)
    return int(json.loads(base64.urlsafe_b64decode(padded))["$offset"])


def project(model: dict[str, Any], expand: Sequence[str]) -> dict[str, Any]:
    if expand:
        out = {"_id": model["_id"], "id": model["id"]}
        for key in expand:
            if key in model:
                out[key] = model[key]
        return out
    return {k: model[k] for k in LIST_DEFAULT if k in model}


def bad_expand(expand: Sequence[str]) -> MockResponse | None:
    unknown = [e for e in expand if e not in EXPANDABLE]
    if unknown:
        return MockResponse.json(
            {"error": f'"expand[0]" must be one of [{", ".join(sorted(EXPANDABLE))}]'},
            status=400)
    return None


def list_models(hub: MockHub, req: MockRequest, m: re.Match[str]) -> MockResponse:
    catalogue = hub.hf
    expand = req.args("expand")
    if expand and any(req.arg(flag) for flag in ("full", "cardData", "config")):
        return MockResponse.json(
            {"error": "Cannot combine expand with full, cardData or config"}, status=400)
    error = bad_expand(expand)
    if error:
        return error
    try:
        limit = min(int(req.arg("limit") or MAX_LIMIT), MAX_LIMIT)
        offset = decode_cursor(req.arg("cursor")) if req.arg("cursor") else 0
    except (ValueError, KeyError, json.JSONDecodeError):
        return MockResponse.json({"error": "Invalid cursor or limit"}, status=400)
    rows = catalogue.select(req)
    page = [project(model, expand) for model in rows[offset:offset + limit]]
    headers: list[tuple[str, str]] = []
    if offset + limit < len(rows):
        params = [(k, v) for k, vs in req.query.items() if k != "cursor" for v in vs]
        params.append(("cursor", encode_cursor(offset + limit)))
        headers.append(("Link", f"<{hub.base_url(req)}/api/models?{urlencode(params)}>; "
                                'rel="next"'))
    return MockResponse.json(page, headers=headers)


def model_detail(hub: MockHub, req: MockRequest, m: re.Match[str]) -> MockResponse:
    repo_id = m.group("repo")
    catalogue = hub.hf
    if repo_id in catalogue.renames:
        target = f"/api/models/{quote(catalogue.renames[repo_id], safe='/')}"
        return MockResponse.text(f"Temporary Redirect. Redirecting to {target}", status=307,
                                 headers=[("Location", target)])
    model = catalogue.by_id(repo_id)
    if model is None:
        return MockResponse.json({"error": "Repository not found"}, status=404,
                                 headers=[("X-Error-Code", "RepoNotFound")])
    expand = req.args("expand")
    error = bad_expand(expand)
    if error:
        return error
    if expand:
        return MockResponse.json(project(model, expand))
    return MockResponse.json(model)


def org_overview(hub: MockHub, req: MockRequest, m: re.Match[str]) -> MockResponse:
    org = hub.hf.organizations.get(m.group("name"))
    if org is None:
        return MockResponse.json({"error": "Organization not found"}, status=404)
    return MockResponse.json(org)


def user_overview(hub: MockHub, req: MockRequest, m: re.Match[str]) -> MockResponse:
    user = hub.hf.users.get(m.group("name"))
    if user is None:
        return MockResponse.json({"error": "User not found"}, status=404)
    return MockResponse.json(user)


def register(hub: MockHub) -> None:
    hub.hf = HfCatalogue.load(hub.fixtures / "huggingface")  # type: ignore[attr-defined]
    hub.route("GET", r"/api/models", list_models)
    hub.route("GET", r"/api/models/(?P<repo>[^/]+(?:/[^/]+)?)(?:/revision/(?P<rev>[^/]+))?",
              model_detail)
    hub.route("GET", r"/api/organizations/(?P<name>[^/]+)/overview", org_overview)
    hub.route("GET", r"/api/users/(?P<name>[^/]+)/overview", user_overview)
