"""DELLA: keep probabilities from density - epsilon (smallest in a row) to density + epsilon (largest), rescaled."""

from __future__ import annotations

import torch

from mergefront.evaluators.methods import sparse
from mergefront.evaluators.methods.base import SegmentData, SegmentParams


def merge_ties(data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
    sparse.merge(sparse.Recipe("della", consensus=True), data, params, out)


def merge_linear(data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
    sparse.merge(sparse.Recipe("della", consensus=False), data, params, out)
