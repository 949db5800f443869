"""Item pipelines: normalise (300), validate against the JSON Schema (400), store (800)."""

from ptmspiders.pipelines.normalize import NormalizePipeline
from ptmspiders.pipelines.store import StorePipeline
from ptmspiders.pipelines.validate import ValidatePipeline

__all__ = ["NormalizePipeline", "StorePipeline", "ValidatePipeline"]
