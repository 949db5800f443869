"""The speed work, in one place: pieces that make a hub-scale crawl faster without changing
what it stores.

:class:`ptmspiders.perf.addon.PerfAddon` (a Scrapy add-on, enabled in ``ADDONS``) switches
each piece on through Scrapy's public settings; each has its own ``PTM_PERF_*`` switch
(``addon.SWITCHES``) so it can be measured alone (``scripts/bench_pieces.py``). What each
gains: ``docs/performance.md``. Nothing else in the project depends on a piece: with every
switch off the crawl is the same, only slower.
"""
