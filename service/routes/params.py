"""Path and query parameters the routes share, each with its bounds (shown in the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from mergefront.bounds import MAX_ID

JobId = Annotated[int, Path(ge=1, le=MAX_ID, description="a job's id")]
TokenId = Annotated[int, Path(ge=1, le=MAX_ID, description="a token's id")]
EvaluationId = Annotated[int, Path(ge=1, le=MAX_ID, description="an evaluation's id")]
Offset = Annotated[int, Query(ge=0, le=MAX_ID, description="how many items to skip")]
Limit = Annotated[int, Query(ge=1, le=1000, description="how many items to return at most")]
