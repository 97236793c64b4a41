"""Bounds on what users send: every number finite and within a documented range, no NUL in any string.

Models of the spec and of requests derive from `CleanModel`: pydantic refuses NaN and infinity in their float
fields (`allow_inf_nan=False`), and free-form values (an evaluator's settings) are walked for the same problems,
so bad input is a 422 naming the field instead of a value the database cannot store.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, field_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

#: the largest id, offset or count a request may carry (PostgreSQL's `integer`)
MAX_ID = 2**31 - 1
#: the largest magnitude of a metric, a reference value or a bound: hypervolumes of up to 16 such objectives stay
#: finite in double precision
MAX_METRIC = 1e15
#: how deep free-form settings may nest
MAX_DEPTH = 32
#: the pattern the schema gives every free string: no NUL character
NO_NUL = r"^[^\x00]*$"

Metric = Annotated[float, Field(ge=-MAX_METRIC, le=MAX_METRIC, allow_inf_nan=False)]


def unclean(value: Any, depth: int = 0) -> str | None:
    """What is wrong with a free-form value (a non-finite number, a NUL character, too deep), or None."""
    if isinstance(value, BaseModel):
        return None  # validated by its own model
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite number"
    if isinstance(value, str):
        return "contains a NUL character" if "\x00" in value else None
    if depth > MAX_DEPTH and isinstance(value, dict | list | tuple):
        return f"nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, dict):
        for key, item in value.items():
            problem = unclean(key, depth + 1) or unclean(item, depth + 1)
            if problem is not None:
                return f"{key}: {problem}"
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            problem = unclean(item, depth + 1)
            if problem is not None:
                return f"[{i}]: {problem}"
    return None


class CleanModel(BaseModel):
    """A model whose floats are finite and whose strings (nested ones included) hold no NUL character."""

    model_config = ConfigDict(allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _clean(cls, value: Any) -> Any:
        problem = unclean(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        """The schema says what the validator checks: every string of the model is free of NUL characters."""
        schema = handler(core_schema)
        for prop in handler.resolve_ref_schema(schema).get("properties", {}).values():
            _no_nul(prop)
        return schema


def _no_nul(schema: dict[str, Any]) -> None:
    """Give the strings `schema` allows (its own, its alternatives', its items' and its keys') the NO_NUL pattern."""
    if schema.get("type") == "string" and not {"pattern", "enum", "const", "format"} & schema.keys():
        schema["pattern"] = NO_NUL
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for option in schema.get(key, []):
            _no_nul(option)
    if isinstance(schema.get("items"), dict):
        _no_nul(schema["items"])
    if isinstance(schema.get("additionalProperties"), dict):
        _no_nul(schema["additionalProperties"])
        schema.setdefault("propertyNames", {"pattern": NO_NUL})
