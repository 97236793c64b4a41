"""mergefront: multi-objective search of model-merge configurations.

The light public surface (spec models, SDK, CLI); nothing here imports torch or Ray.
"""

from __future__ import annotations

from mergefront.client import Client, Job
from mergefront.errors import (
    AuthenticationError,
    ConflictError,
    EvaluationFailedError,
    InvalidSpecError,
    MergefrontError,
    NotFoundError,
    PermissionDeniedError,
    StorageError,
)
from mergefront.spec import JobSpec, load_spec, parse_spec

__all__ = [
    "AuthenticationError",
    "Client",
    "ConflictError",
    "EvaluationFailedError",
    "InvalidSpecError",
    "Job",
    "JobSpec",
    "MergefrontError",
    "NotFoundError",
    "PermissionDeniedError",
    "StorageError",
    "load_spec",
    "parse_spec",
]
__version__ = "0.1.0"
