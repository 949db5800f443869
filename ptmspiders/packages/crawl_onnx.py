"""ONNX Model Zoo packages: manifest-checked weights from the media host, and the README."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from ptmspiders import github
from ptmspiders.github import RepoRef
from ptmspiders.packages import onnx
from ptmspiders.packages.crawler import Job, PackageCrawler
from ptmspiders.packages.plan import FileSpec

logger = logging.getLogger(__name__)


class OnnxPackages(PackageCrawler):
    """The manifest's model file(s) and the model folder's README."""

    async def onnx_package(self, job: Job) -> AsyncIterator[Any]:
        plan = onnx.package_plan(job.model, self.media_url)
        if plan is None:
            self.count("packages/onnx/unusable_record")
            job.reason = "no_manifest_facts"
            yield await self.finish(job)
            return
        job.revision, job.source_url, job.specs = plan.revision, plan.source_url, plan.files
        readme = onnx.readme_path(str(job.model["hub_id"]))
        tree = await self.github_tree(plan.repo, plan.revision)
        entry = tree.get(readme) if tree is not None else None
        if tree is None or entry is not None:
            ref = RepoRef.parse(plan.repo, plan.revision)
            job.specs.append(FileSpec(
                readme, entry.size if entry else None, git_oid=entry.sha if entry else None,
                url=github.raw_url(self.raw_url, ref, readme)))
        present = await self.in_thread(self.present_blobs, job.specs)
        fetch = self.plan(job, plan.owner, plan.name, present)
        if not fetch:
            yield await self.finish(job)
            return
        results = await asyncio.gather(*(
            self.stream(str(job.specs[i].url), job.specs[i]) if job.specs[i].lfs
            else self.fetch_small(str(job.specs[i].url), job.specs[i]) for i in fetch))
        for i, fetched in zip(fetch, results, strict=True):
            async for item in self.file_fetched(job, i, fetched):
                yield item
