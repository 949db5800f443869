"""``scrapy crawl``, exiting non-zero when the crawl ended incomplete (see
:mod:`ptmspiders.outcome` for the codes).

Scrapy's own command exits 0 whenever the spider could start, so a crawl whose hub refused
every connection looked like a success to cron. This one runs the crawl the same way, through
the public ``CrawlerProcess`` API, keeps the crawler, and reads the outcome from its final
stats."""

from __future__ import annotations

import argparse
import logging

from scrapy.commands.crawl import Command as ScrapyCrawlCommand
from scrapy.exceptions import UsageError

from ptmspiders.outcome import crawl_problems, exit_status

logger = logging.getLogger(__name__)


class Command(ScrapyCrawlCommand):
    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) < 1:
            raise UsageError
        if len(args) > 1:
            raise UsageError(
                "running 'scrapy crawl' with more than one spider is not supported")
        assert self.crawler_process is not None
        crawler = self.crawler_process.create_crawler(args[0])
        self.crawler_process.crawl(crawler, **opts.spargs)
        self.crawler_process.start()
        if self.crawler_process.bootstrap_failed:
            self.exitcode = 1
            return
        stats = crawler.stats.get_stats() if crawler.stats is not None else {}
        self.exitcode = exit_status(stats)
        if self.exitcode:
            logger.error("Crawl %s did not do its whole job (%s): exit status %d", args[0],
                         ", ".join(crawl_problems(stats)) or "refused by the store's lock",
                         self.exitcode)
