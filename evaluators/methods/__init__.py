"""Merge methods, one small module each, and the plain name -> implementation registry."""

from __future__ import annotations

from mergefront.evaluators.methods import breadcrumbs, dare, della, linear, model_stock, slerp, task_arithmetic, ties
from mergefront.evaluators.methods.base import MergeMethod, SegmentData, SegmentParams

REGISTRY: dict[str, MergeMethod] = {
    "linear": linear.merge,
    "task_arithmetic": task_arithmetic.merge,
    "ties": ties.merge,
    "dare_ties": dare.merge_ties,
    "dare_linear": dare.merge_linear,
    "breadcrumbs": breadcrumbs.merge_linear,
    "breadcrumbs_ties": breadcrumbs.merge_ties,
    "della": della.merge_ties,
    "della_linear": della.merge_linear,
    "slerp": slerp.merge,
    "model_stock": model_stock.merge,
}

# The order mergekit sorts magnitudes in, per method that cuts by magnitude rank (`SegmentData.rank_by_magnitude`).
RANKING = {"ties": "descending", "breadcrumbs": "ascending", "breadcrumbs_ties": "ascending"}
NEEDS_ROW_RANKS = {"della", "della_linear"}

__all__ = ["NEEDS_ROW_RANKS", "RANKING", "REGISTRY", "MergeMethod", "SegmentData", "SegmentParams"]
