"""Pick the torch device a worker uses."""

from __future__ import annotations

import torch


def pick_device(preference: str = "auto") -> torch.device:
    """CUDA when present (or asked for), CPU otherwise; asking for CUDA where there is none is an error."""
    if preference == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if preference == "cuda":
        raise RuntimeError("resources.device is 'cuda' but this worker sees no CUDA device")
    return torch.device("cpu")
