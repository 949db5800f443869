"""The Scrapy add-on that puts the project's own extensions into every crawl.

A component dict given on the command line (``-s 'EXTENSIONS={...}'``) replaces the project's
whole dict, and the crawl then died at start without the context its store needs. The add-on
adds each extension of :data:`EXTENSIONS` that the setting does not name, so a user's
extensions come on top of the project's; a ``None`` for one of them still switches it off,
except :class:`~ptmspiders.context.CrawlContext`, without which no item can be stored.
"""

from __future__ import annotations

from scrapy.settings import BaseSettings
from scrapy.utils.misc import load_object

# Import path -> order. The one list of the project's extensions.
EXTENSIONS: dict[str, int] = {
    # What the crawl's components share: the store, its writer, checkpoints, history state
    # (ptmspiders/context.py). Its own signals connect as it is used, not in this order.
    "ptmspiders.context.CrawlContext": 10,
    # Built before the scheduler opens JOBDIR: it must reset what a killed run left there.
    "ptmspiders.checkpoint.KilledRunRecovery": 50,
    # Before history: its spider_opened takes the hub's lock before history writes, its
    # spider_closed tells history whether the lock held to the end.
    "ptmspiders.crawllock.CrawlLock": 450,
    "ptmspiders.history.CrawlHistory": 500,
    # Spidermon's extension; history asks it for the crawl's health before writing the record.
    "ptmspiders.monitors.CrawlHealth": 900,
}
REQUIRED = "ptmspiders.context.CrawlContext"


class ProjectAddon:
    """Adds the project's extensions that ``EXTENSIONS`` does not name already."""

    def update_settings(self, settings: BaseSettings) -> None:
        for path, order in EXTENSIONS.items():
            cls = load_object(path)
            if path == REQUIRED:
                settings.set_in_component_priority_dict("EXTENSIONS", cls, order)
            else:
                settings.setdefault_in_component_priority_dict("EXTENSIONS", cls, order)
