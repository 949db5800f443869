"""A crawl's final stats as a JSON file, for the tests and ``scripts/bench.py``.

``-s STATS_CLASS=tests.statsfile.JsonFileStatsCollector -s STATS_JSON_FILE=<path>``: Scrapy's
``MemoryStatsCollector`` that also writes the stats it keeps when the spider closes (through
``STATS_CLASS``, Scrapy's public setting for it), so a caller reads them as data instead of
parsing the ``Dumping Scrapy stats`` block of the log. Values JSON cannot hold (datetimes)
are written as their ISO text.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from scrapy import Spider
from scrapy.crawler import Crawler
from scrapy.statscollectors import MemoryStatsCollector

SETTING = "STATS_JSON_FILE"


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime.datetime | datetime.date) else str(value)


class JsonFileStatsCollector(MemoryStatsCollector):
    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        self.path = crawler.settings.get(SETTING) or None

    def close_spider(self, spider: Spider | None = None, reason: str | None = None) -> None:
        super().close_spider(spider, reason)
        if self.path:
            tmp = Path(f"{self.path}.tmp")
            tmp.write_text(json.dumps(self.get_stats(), default=_plain, sort_keys=True))
            tmp.replace(self.path)


def read_stats(path: Path) -> dict[str, Any]:
    """The stats a crawl wrote to ``path``; empty if it wrote none (it never closed)."""
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return {}
