"""Columns of a job's evaluations as people type them, and filters on them (`parity_accuracy >= 0.8`).

A column is a table column (`number`, `merge_seconds`, ...), an objective (`metrics.NAME`) or a merge parameter
(`params.NAME`); objectives and parameters may be typed by their own name, without the prefix.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mergefront.bounds import MAX_METRIC
from mergefront.errors import InvalidSpecError


@dataclass(frozen=True)
class ColumnFilter:
    """`column op value`, e.g. `parity_accuracy >= 0.5`; `column` is a table column, an objective or a parameter."""

    column: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.column} {self.op} {self.value:g}"


OPS: dict[str, Callable[[Any, float], Any]] = {
    ">=": lambda c, v: c >= v, "<=": lambda c, v: c <= v, ">": lambda c, v: c > v, "<": lambda c, v: c < v,
    "=": lambda c, v: c == v, "!=": lambda c, v: c != v,
}

_FILTER = re.compile(r"^\s*([\w.:\-]+)\s*(>=|<=|!=|=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


def parse_filter(text: str, loc: str = "filter") -> ColumnFilter:
    """`parity_accuracy>=0.5` -> ColumnFilter('parity_accuracy', '>=', 0.5); InvalidSpecError saying how to write it."""
    match = _FILTER.match(text)
    if match is None:
        raise InvalidSpecError(f"cannot read {text.strip()!r}: write a column, an operator (>= <= > < = !=) and a "
                               "number, e.g. parity_accuracy >= 0.8", (loc,))
    value = float(match[3])
    if not abs(value) <= MAX_METRIC:
        raise InvalidSpecError(f"{match[3]} is out of range: values lie within +-{MAX_METRIC:g}", (loc,))
    return ColumnFilter(match[1], match[2], value)


def typed_name(column: str) -> str:
    """How a column is typed: an objective or a parameter by its own name, without `metrics.` / `params.`."""
    return column.split(".", 1)[1] if column.startswith(("metrics.", "params.")) else column


def resolve_column(*, columns: Sequence[str], name: str, loc: str) -> str:
    """The column `name` means: a column's full name, or an objective's or a parameter's own name."""
    name = name.strip()
    for candidate in (name, f"metrics.{name}", f"params.{name}"):
        if candidate in columns:
            return candidate
    typed = [typed_name(c) for c in columns]
    # names that start with what was typed, then names that hold it, then names spelt alike
    close = list(dict.fromkeys([*(t for t in typed if t.startswith(name)), *(t for t in typed if name in t),
                                *difflib.get_close_matches(name, typed, n=3, cutoff=0.5)]))[:3]
    hint = f"did you mean {' or '.join(close)}?" if close else f"the columns are {', '.join(typed)}"
    raise InvalidSpecError(f"this job has no column {name!r}; {hint}", (loc,))
