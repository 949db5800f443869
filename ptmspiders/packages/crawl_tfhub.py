"""TF Hub packages: a Module's archive as the ``tensorflow_hub`` library fetches it.

``{TFHUB_URL}/{handle}?tf-hub-format=compressed`` is the library's download protocol; tfhub.dev
now answers it with a redirect to the model's Kaggle archive (a ``.tar.gz`` holding the
SavedModel at its root). The archive takes Kaggle's path: the redirect target is streamed
without any credential (none is needed: tfhub.dev takes none), checked against the MD5 its
storage host publishes when it publishes one, and unpacked path-safely.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from ptmspiders.packages.crawl_kaggle import KagglePackages
from ptmspiders.packages.crawler import Job
from ptmspiders.packages.layout import UnsafePath, package_dir
from ptmspiders.stores import crawler_store

# A handle segment: tfhub.dev's publisher, model-name and version slugs (never "+", which
# joins the model-name segments into one folder name).
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def tfhub_location(handle: str) -> tuple[str, str, str] | None:
    """``(publisher, name, version)`` of a Module handle such as
    ``google/imagenet/mobilenet_v2_100_224/classification/5`` (the name's segments joined by
    ``+``), or ``None`` when the handle is not one."""
    parts = handle.split("/")
    if len(parts) < 3 or not all(_SLUG.fullmatch(p) for p in parts) or not parts[-1].isdigit():
        return None
    return parts[0], "+".join(parts[1:-1]), parts[-1]


class TfhubPackages(KagglePackages):
    """A Module's archive under ``tfhub/<publisher>/<name>/<version>/``."""

    async def tfhub_package(self, job: Job) -> AsyncIterator[Any]:
        """The Module's archive, unpacked at the package's root. Placeholders (nothing
        published) and the Lite, Tfjs and Coral variants (single files or folders that
        tfhub.dev serves in no archive format) are recorded as not fetched, with why."""
        handle = str(job.model.get("hub_id") or "")
        kind = str(job.model.get("model_type") or "")
        job.source_url = f"{self.tfhub_url}/{handle}"
        where = tfhub_location(handle)
        if kind != "module" or where is None:
            job.reason = ("placeholder" if kind == "placeholder"
                          else "not_an_archive" if kind != "module" else "bad_handle")
            self.count(f"packages/tfhub/{job.reason}")
            yield await self.finish(job)
            return
        publisher, name, job.revision = where
        try:
            job.root = package_dir(self.dest, job.hub, publisher, name, job.revision)
        except UnsafePath:
            job.reason = "unsafe_location"
            yield await self.finish(job)
            return
        before = crawler_store(self.crawler).get("packages", job.id) or {}
        reused = self.reuse(before, "")
        if reused is not None:
            self.count("packages/files/present", len(reused))
            self.add_records(job, reused)
            yield await self.finish(job)
            return
        if self.max_bytes is not None and self.planned >= self.max_bytes:
            self.count("packages/over_budget")
            job.reason = "max_bytes"
            yield await self.finish(job)
            return
        url = f"{self.tfhub_url}/{quote(handle)}?tf-hub-format=compressed"
        got = await self.archive(job, url, self.wanted_under(""), md5=True, strip=0)
        if got.reason is not None:  # nothing kept, nothing taken from the budget
            # A package-level failure (a rerun fetches it again) or a refusal past a bound.
            self.count(f"packages/tfhub/failed/{got.reason}")
            job.reason = got.reason
        else:
            self.planned += got.size
            self.progress.planned_bytes += got.size
            self.add_records(job, self.kaggle_records(job, "", got))
        yield await self.finish(job)
