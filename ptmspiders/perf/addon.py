"""The Scrapy add-on that switches the speed work on, piece by piece.

Each piece is Scrapy's public configuration (a setting, a component in place of Scrapy's, an
extension); the add-on sets it at the ``addon`` priority, so a project or command-line setting
of the same name still wins. ``-s PTM_PERF_<PIECE>=False`` leaves a piece out.
"""

from __future__ import annotations

from scrapy.settings import BaseSettings

SCRAPY_CORE_STATS = "scrapy.extensions.corestats.CoreStats"

# Switch -> what the piece does (docs/performance.md has what each gains).
SWITCHES: dict[str, str] = {
    "PTM_PERF_GC": "raise the garbage collector's thresholds and freeze start-up objects "
                   "(perf/tuning.py)",
    "PTM_PERF_ITEM_COUNT": "count scraped items in the item processor instead of a receiver "
                           "of the item_scraped signal (perf/itemcount.py)",
    "PTM_PERF_LOG_FORMATTER": "build no per-item/per-response DEBUG records when the log level "
                              "hides them (perf/logformatter.py)",
    "PTM_PERF_DECODE_ONCE": "a list page checked by the retry middleware is decoded once, not "
                            "again by the spider (perf/decoded.py)",
}


def enabled(settings: BaseSettings, switch: str) -> bool:
    """Whether the piece behind ``switch`` (a key of :data:`SWITCHES`) is on (the default)."""
    if switch not in SWITCHES:
        raise KeyError(f"{switch} is not a switch of ptmspiders.perf")
    return settings.getbool(switch, True)


class PerfAddon:
    """Configures the pieces whose switch is on; the others stay Scrapy's defaults."""

    def update_settings(self, settings: BaseSettings) -> None:
        from ptmspiders.perf.itemcount import CoreStats, CountingItemProcessor
        from ptmspiders.perf.logformatter import PtmLogFormatter
        from ptmspiders.perf.tuning import InterpreterTuning

        if enabled(settings, "PTM_PERF_ITEM_COUNT"):
            settings.set("ITEM_PROCESSOR", CountingItemProcessor, priority="addon")
            # By the import path EXTENSIONS_BASE names it under, so that the None overrides.
            extensions = settings.getdict("EXTENSIONS")
            extensions[SCRAPY_CORE_STATS] = None
            settings.set("EXTENSIONS", extensions, settings.getpriority("EXTENSIONS") or 0)
            settings.set_in_component_priority_dict("EXTENSIONS", CoreStats, 0)
        if enabled(settings, "PTM_PERF_LOG_FORMATTER"):
            settings.set("LOG_FORMATTER", PtmLogFormatter, priority="addon")
        if enabled(settings, "PTM_PERF_GC"):
            settings.set_in_component_priority_dict("EXTENSIONS", InterpreterTuning, 100)
