"""Merge methods, one small module each, and the plain name -> implementation registry."""

from __future__ import annotations

from mergefront.evaluators.methods import linear, model_stock, slerp, sparse
from mergefront.evaluators.methods.base import MergeMethod, SegmentData, SegmentParams

REGISTRY: dict[str, MergeMethod] = {
    "linear": linear.merge,
    **{name: sparse.method(name) for name in sparse.RECIPES},  # task arithmetic, TIES, DARE, breadcrumbs, DELLA
    "slerp": slerp.merge,
    "model_stock": model_stock.merge,
}

# The order mergekit sorts magnitudes in, per method that cuts by magnitude rank (`SegmentData.rank_by_magnitude`).
RANKING = {"ties": "descending", "breadcrumbs": "ascending", "breadcrumbs_ties": "ascending"}
NEEDS_ROW_RANKS = {"della", "della_linear"}

__all__ = ["NEEDS_ROW_RANKS", "RANKING", "REGISTRY", "MergeMethod", "SegmentData", "SegmentParams"]
