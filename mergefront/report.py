"""Plain-text tables for the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from mergefront.schemas import FrontMember, JobOut, ParetoOut, RankingOut


def format_space(rows: Sequence[tuple[str, float, float, str]]) -> str:
    """A search space as text: its dimension, then one line per coordinate (name, bounds, meaning)."""
    width = max((len(name) for name, *_ in rows), default=0)
    lines = [f"search space: {len(rows)} dimensions"]
    lines += [f"  {name:<{width}}  [{low:g}, {high:g}]  {meaning}" for name, low, high, meaning in rows]
    return "\n".join(lines)


def format_front(front: ParetoOut, max_rows: int = 40) -> str:
    """The front as a table: one row per member, its objectives then its merge parameters. Where a point was
    evaluated more than once (`optimizer.reevaluate`) its objectives are the mean ± the standard deviation over its
    evaluations, and a column says how many."""
    if not front.members:
        return "no completed evaluation yet"
    params = list(front.members[0].params)
    repeated = any(m.n_evaluations > 1 for m in front.members)
    header = ["#", *(["evals"] if repeated else []), *front.objectives, *params]
    sign = [1.0 if mx else -1.0 for mx in front.maximize]
    first = front.objectives[0]
    members = sorted(front.members, key=lambda m: -sign[0] * (m.metrics or {}).get(first, 0.0))

    def value(m: FrontMember, k: str) -> str:
        mean = f"{(m.metrics or {}).get(k, float('nan')):.4f}"
        return f"{mean}±{(m.metrics_std or {}).get(k, 0.0):.4f}" if repeated else mean

    rows = [[str(m.number), *([str(m.n_evaluations)] if repeated else []), *(value(m, k) for k in front.objectives),
             *(f"{m.params[p]:.3f}" for p in params)] for m in members[:max_rows]]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = [f"Pareto front of job {front.job_id}: {len(front.members)} of {front.n_completed} completed "
             f"evaluations, hypervolume {front.hypervolume:.6g} (reference point {front.reference_point})"
             + ("; objectives: mean ± std over each point's evaluations" if repeated else ""),
             "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    if len(members) > max_rows:
        lines.append(f"... and {len(members) - max_rows} more")
    return "\n".join(lines)


def _columns(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 0) -> list[str]:
    """Header and rows aligned in columns; the first `left` columns flush left, the others right."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return [line(header), *(line(r) for r in rows)]


def when(moment: datetime | None, now: datetime | None = None) -> str:
    """A stored (UTC) time in the reader's terms: `3 min ago`, `2.5 h ago`, else the local date and time."""
    if moment is None:
        return "-"
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    if seconds < 90:
        return f"{max(0, round(seconds))} s ago"
    if seconds < 5400:
        return f"{round(seconds / 60)} min ago"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h ago"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M %Z")


def format_jobs(jobs: Sequence[JobOut]) -> str:
    """Jobs as a table: id, name, state, progress, optimizer, hypervolume, age, notes (first line)."""
    if not jobs:
        return "no jobs"
    rows = [[str(j.id), j.name, j.state, f"{j.n_completed + j.n_failed}/{j.budget}", j.optimizer,
             "-" if j.hypervolume is None else f"{j.hypervolume:.6g}", when(j.created_at),
             (j.notes or "").splitlines()[0][:40] if j.notes else ""] for j in jobs]
    return "\n".join(_columns(["id", "name", "state", "done", "optimizer", "hypervolume", "created", "notes"], rows,
                              left=3))


def format_ranking(ranking: RankingOut, max_rows: int = 20) -> str:
    """A ranked front: the preference, the constraints, then one row per feasible member, best first."""
    weights = ", ".join(f"{k}={w:g}" for k, w in zip(ranking.objectives, ranking.weights, strict=True))
    lines = [f"job {ranking.job_id}: {ranking.n_feasible} of {ranking.n_front} front members meet "
             f"{' and '.join(ranking.constraints) or 'no constraint'}; weights {weights}"]
    if not ranking.items:
        return lines[0]
    rows = [[str(r.rank), str(r.evaluation.number), str(r.evaluation.id), f"{r.score:.4f}",
             *(f"{(r.evaluation.metrics or {}).get(k, float('nan')):.4f}" for k in ranking.objectives)]
            for r in ranking.items[:max_rows]]
    lines += _columns(["rank", "#", "id", "score", *ranking.objectives], rows)
    best = ranking.items[0].evaluation
    tie = f"; {ranking.tied} tie at the top score ({ranking.rule})" if ranking.tied > 1 else ""
    lines.append(f"recommended: evaluation {best.id} (#{best.number}){tie}")
    return "\n".join(lines)
