"""A job's evaluations as a table to take away: CSV and Parquet, written by pyarrow.

One row per evaluation, in the order and with the filters the caller asks (the dashboard sends its table's). Each
objective and each merge parameter is a column named as the job names it (a name taken twice, an objective and a
parameter, gets its `metrics.` / `params.` prefix); times are UTC timestamps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from mergefront.service.models import Evaluation, Job

if TYPE_CHECKING:
    import pyarrow as pa

TableFormat = Literal["csv", "parquet"]
MEDIA_TYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}
_TIMES = ("created_at", "started_at", "finished_at")


def column_names(objectives: Sequence[str], params: Sequence[str]) -> tuple[list[str], list[str]]:
    """The columns of the objectives and of the parameters; only a name both use gets its prefix."""
    clash = set(objectives) & set(params)
    return ([f"metrics.{k}" if k in clash else k for k in objectives],
            [f"params.{k}" if k in clash else k for k in params])


def evaluations_table(job: Job, rows: Sequence[Evaluation], front: set[int], params: Sequence[str]) -> pa.Table:
    """The rows as an Arrow table (`len(rows)` rows): ids, state, front flag, objectives, parameters, timings."""
    import pyarrow as pa

    metric_cols, param_cols = column_names(job.objectives, params)
    columns: dict[str, Any] = {
        "id": pa.array([r.id for r in rows], pa.int64()),
        "number": pa.array([r.number for r in rows], pa.int64()),
        "state": pa.array([r.state for r in rows], pa.string()),
        "on_front": pa.array([r.id in front for r in rows], pa.bool_()),
    }
    for name, key in zip(metric_cols, job.objectives, strict=True):
        columns[name] = pa.array([(r.metrics or {}).get(key) for r in rows], pa.float64())
    for name, key in zip(param_cols, params, strict=True):
        columns[name] = pa.array([r.params.get(key) for r in rows], pa.float64())
    columns["attempts"] = pa.array([r.attempts for r in rows], pa.int64())
    columns["worker"] = pa.array([r.worker for r in rows], pa.string())
    columns["merge_seconds"] = pa.array([r.merge_seconds for r in rows], pa.float64())
    columns["eval_seconds"] = pa.array([r.eval_seconds for r in rows], pa.float64())
    for name in _TIMES:
        columns[name] = pa.array([getattr(r, name) for r in rows], pa.timestamp("ms", tz="UTC"))
    columns["error"] = pa.array([r.error for r in rows], pa.string())
    return pa.table(columns)


def encode(table: pa.Table, fmt: TableFormat) -> bytes:
    """The table as CSV (a header line, then one line per row) or as a Parquet file."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    if fmt == "csv":
        import pyarrow.csv as pa_csv

        pa_csv.write_csv(table, sink)
    else:
        import pyarrow.parquet as pq

        pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())
