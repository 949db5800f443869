"""A hostile hub: paging links and redirects that send the crawler somewhere else.

``hub.hostile`` (a :class:`Hostile`), off until a test sets it:

- ``next_link``: every ``Link: <...>; rel="next"`` the hub answers whose URL contains
  ``when`` points there instead; a URL ending in ``/`` is a foreign base (the original path
  and query are kept under it), anything else is used as is (``file:///etc/passwd``).
- ``redirect_to``: every request whose target contains ``when`` answers ``307`` to that
  base with the same path and query.

The foreign host is another ``MockHub`` (``MockHub(host="127.0.0.2")``), whose ``.log`` shows
whether the crawler went there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tests.mockhub.server import MockHub, MockRequest, MockResponse

_NEXT_RE = re.compile(r'<([^>]*)>(\s*;\s*rel="?next"?)')


@dataclass
class Hostile:
    next_link: str | None = None
    redirect_to: str | None = None
    when: str = ""

    def move(self, url: str) -> str:
        assert self.next_link is not None
        if not self.next_link.endswith("/"):
            return self.next_link
        path = url.split("://", 1)[-1]
        path = path[path.find("/"):] if "/" in path else "/"
        return self.next_link.rstrip("/") + path

    def before(self, hub: MockHub, req: MockRequest) -> MockResponse | None:
        if self.redirect_to is None or self.when not in req.raw_target:
            return None
        return MockResponse.text("moved", status=307, headers=[
            ("Location", self.redirect_to.rstrip("/") + req.raw_target)])

    def after(self, hub: MockHub, req: MockRequest, resp: MockResponse) -> MockResponse:
        if self.next_link is None:
            return resp
        headers = []
        for name, value in resp.headers:
            if name.lower() == "link":
                value = _NEXT_RE.sub(
                    lambda m: f"<{self.move(m.group(1)) if self.when in m.group(1) else m.group(1)}"
                              f">{m.group(2)}", value)
            headers.append((name, value))
        resp.headers = headers
        return resp


def register(hub: MockHub) -> None:
    hostile = Hostile()
    hub.hostile = hostile  # type: ignore[attr-defined]
    hub.before.insert(0, hostile.before)
    hub.after.append(hostile.after)
