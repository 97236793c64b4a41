"""Model Breadcrumbs: drop the largest (gamma) and the smallest entries, keep a density-sized band between."""

from __future__ import annotations

import torch

from mergefront.evaluators.methods import sparse
from mergefront.evaluators.methods.base import SegmentData, SegmentParams


def merge_linear(data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
    sparse.merge(sparse.Recipe("outliers", consensus=False), data, params, out)


def merge_ties(data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
    sparse.merge(sparse.Recipe("outliers", consensus=True), data, params, out)
