"""Plain-text tables for the terminal."""

from __future__ import annotations

from collections.abc import Sequence

from mergefront.schemas import ParetoOut


def format_space(rows: Sequence[tuple[str, float, float, str]]) -> str:
    """A search space as text: its dimension, then one line per coordinate (name, bounds, meaning)."""
    width = max((len(name) for name, *_ in rows), default=0)
    lines = [f"search space: {len(rows)} dimensions"]
    lines += [f"  {name:<{width}}  [{low:g}, {high:g}]  {meaning}" for name, low, high, meaning in rows]
    return "\n".join(lines)


def format_front(front: ParetoOut, max_rows: int = 40) -> str:
    """The front as a table: one row per member, its objectives then its merge parameters."""
    if not front.members:
        return "no completed evaluation yet"
    params = list(front.members[0].params)
    header = ["#", *front.objectives, *params]
    sign = [1.0 if mx else -1.0 for mx in front.maximize]
    first = front.objectives[0]
    members = sorted(front.members, key=lambda m: -sign[0] * (m.metrics or {}).get(first, 0.0))
    rows = [[str(m.number), *(f"{(m.metrics or {}).get(k, float('nan')):.4f}" for k in front.objectives),
             *(f"{m.params[p]:.3f}" for p in params)] for m in members[:max_rows]]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = [f"Pareto front of job {front.job_id}: {len(front.members)} of {front.n_completed} completed "
             f"evaluations, hypervolume {front.hypervolume:.6g} (reference point {front.reference_point})",
             "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    if len(members) > max_rows:
        lines.append(f"... and {len(members) - max_rows} more")
    return "\n".join(lines)
