"""Hub credentials, each sent only to its own hub's API origin.

Tokens come from the environment (``HF_TOKEN``, ``GITHUB_TOKEN``, ``KAGGLE_USERNAME`` and
``KAGGLE_KEY``) and are attached per request after matching scheme, host and port exactly, so a
redirect to another host (or a raw-file host) never carries them.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured

from ptmspiders.config import ptm_settings
from ptmspiders.hubs import SERVICES
from ptmspiders.origins import origin as http_origin

logger = logging.getLogger(__name__)

AUTH_META = "ptm_auth_origin"
AUTHENTICATED = [s for s in SERVICES.values() if s.credentials]


def origin(url: str) -> str:
    """The origin of :func:`ptmspiders.origins.origin` (the one rule), ``""`` for a URL that
    has none: no credential's origin is empty, so such a URL never gets one."""
    return http_origin(url) or ""


@dataclass(frozen=True)
class Credential:
    name: str
    origin: str
    header: str

    def __repr__(self) -> str:  # never print the header value
        return f"Credential({self.name!r}, {self.origin!r})"


def credentials_from(settings: Mapping[str, str], env: Mapping[str, str]) -> list[Credential]:
    """A credential for each service (hubs.py) whose environment variables are all set, bound
    to the origin of its base-URL setting; named after its last variable (the secret)."""
    creds = []
    for service in AUTHENTICATED:
        values = [env.get(name) for name in service.credentials]
        if not all(values):
            continue
        if service.auth_scheme == "Basic":
            value = base64.b64encode(":".join(map(str, values)).encode()).decode()
        else:
            value = str(values[0])
        creds.append(Credential(service.credentials[-1], origin(settings[service.url_setting]),
                                f"{service.auth_scheme} {value}"))
    return creds


class HubAuthMiddleware:
    def __init__(self, creds: list[Credential]) -> None:
        self.by_origin = {c.origin: c for c in creds}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> HubAuthMiddleware:
        s = ptm_settings(crawler)
        urls = {a.url_setting: s.value(a.url_setting) for a in AUTHENTICATED}
        if not s.auth_enabled:
            raise NotConfigured("PTM_AUTH_ENABLED is off")
        creds = credentials_from(urls, os.environ)
        if creds:
            logger.info("Hub credentials in use: %s", ", ".join(c.name for c in creds))
        # Enabled even without credentials: it still strips Authorization off other origins.
        return cls(creds)

    def process_request(self, request: Request) -> None:
        cred = self.by_origin.get(origin(request.url))
        if cred is not None:
            request.headers["Authorization"] = cred.header
            request.meta[AUTH_META] = cred.origin
        elif AUTH_META in request.meta or b"Authorization" in request.headers:
            # A redirect (or a copied request) that left the credential's origin.
            request.headers.pop(b"Authorization", None)
            request.meta.pop(AUTH_META, None)
