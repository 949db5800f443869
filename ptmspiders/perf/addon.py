"""The Scrapy add-on that switches the speed work on, piece by piece.

Each piece is Scrapy's public configuration (a setting, a component in place of Scrapy's, an
extension); the add-on sets it at the ``addon`` priority, so a project or command-line setting
of the same name still wins. ``-s PTM_PERF_<PIECE>=False`` leaves a piece out.
"""

from __future__ import annotations

from scrapy.settings import BaseSettings

from ptmspiders.config import PtmSettings, SettingsError, default, setting_name

SCRAPY_CORE_STATS = "scrapy.extensions.corestats.CoreStats"

# Switch -> what the piece does (declared with the other settings in ptmspiders/config.py;
# docs/performance.md has what each gains).
SWITCHES: dict[str, str] = {
    setting_name(field): str(info.description)
    for field, info in PtmSettings.model_fields.items() if field.startswith("perf_")}


def enabled(settings: BaseSettings, switch: str) -> bool:
    """Whether the piece behind ``switch`` (a key of :data:`SWITCHES`) is on (the default).
    A value that breaks its rule counts as the default here: ``scrapy crawl`` refuses it in
    one line before the crawl starts (ptmspiders/commands/crawl.py)."""
    if switch not in SWITCHES:
        raise KeyError(f"{switch} is not a switch of ptmspiders.perf")
    try:
        return bool(PtmSettings.from_settings(settings).value(switch))
    except SettingsError:
        return bool(default(switch))


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
