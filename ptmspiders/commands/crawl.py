"""``scrapy crawl``, refusing wrong spider arguments in one line before the crawl starts.

Scrapy creates the spider inside the crawl's asyncio task, where an exception raised by its
``__init__`` surfaces as a 20-line "Task exception was never retrieved" traceback. The
spider's parameter model (:mod:`ptmspiders.args`) is asked here first instead: a wrong value
or an unknown name is logged as one error line and the command exits with status 2 (a usage
error, as for Scrapy's own), with no crawl record written and no request sent."""

from __future__ import annotations

import argparse
import logging

from scrapy.commands.crawl import Command as ScrapyCrawlCommand

from ptmspiders.args import ArgumentError
from ptmspiders.spiders.base import PtmSpider

logger = logging.getLogger(__name__)

USAGE_ERROR = 2


class Command(ScrapyCrawlCommand):
    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if self.arguments_refused(args, opts):
            self.exitcode = USAGE_ERROR
            return
        super().run(args, opts)

    def arguments_refused(self, args: list[str], opts: argparse.Namespace) -> bool:
        """Whether the ``-a`` arguments are wrong for the spider (then logged)."""
        if len(args) != 1 or self.crawler_process is None:
            return False  # Scrapy's own run() reports a missing or extra spider name
        try:
            spidercls = self.crawler_process.spider_loader.load(args[0])
        except KeyError:
            return False  # and an unknown one
        if not issubclass(spidercls, PtmSpider):
            return False
        try:
            spidercls.parse_args(opts.spargs)
        except ArgumentError as exc:
            logger.error("%s", exc)
            return True
        return False
