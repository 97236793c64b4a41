"""Evaluating front members again, with new mask seeds, within the budget (`optimizer.reevaluate`).

A merge method with random masks (DARE, DELLA) scores the same merge differently with each candidate's seed, so one
evaluation of a point is one draw of a noisy objective. With `reevaluate` set, a share of the budget goes to
evaluating points already on the front again; each repeat is a real evaluation (its own number, so its own seed)
of the same parameters, and the front is then taken on the means (`mergefront.service.front`).

The rule, so a seed replays exactly:
- how many: the repeats are spread evenly over the second half of the budget; after `c` evaluations created,
  `floor(total x (c - budget / 2) / (budget / 2))` of them are due, `total = floor(reevaluate x budget)`.
- which: one at a time, the member of the front of means with the fewest evaluations, counting those in flight
  and those already chosen in this ask; among those, the widest spread (its objectives' standard deviations over
  the front's range, summed), then the oldest. So every repeat due is made as long as the front has a member, and
  the total is exactly `floor(reevaluate x budget)` whenever the second half of the budget has a front to repeat.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from mergefront.optimizers.base import History, Observation, Optimizer, Point
from mergefront.optimizers.pareto import nondominated_mask


def repeats_due(share: float, budget: int, n_created: int, n_repeated: int, n: int) -> int:
    """How many of the next `n` candidates are repeats, after `n_created` candidates of which `n_repeated` were."""
    total = math.floor(share * budget + 1e-9)
    if total <= 0:
        return 0
    half = budget / 2
    reached = min(1.0, max(0.0, (n_created + n - half) / half))
    return max(0, min(n, math.floor(total * reached + 1e-9) - n_repeated))


def count_repeats(history: Sequence[Observation], pending: Sequence[Point]) -> int:
    """How many of the history's and the pending points are of a point that came before them."""
    if isinstance(history, History):
        seen: set[Point] = set()
        extra = 0
        for p in pending:
            extra += tuple(p) in history or tuple(p) in seen
            seen.add(tuple(p))
        return history.repeats + extra
    points = [tuple(o.x) for o in history] + [tuple(p) for p in pending]
    return len(points) - len(set(points))


def choose_repeats(history: Sequence[Observation], pending: Sequence[Point], k: int) -> list[Point]:
    """Up to `k` members of the front of means to evaluate again (the rule in the module's docstring)."""
    if k <= 0:
        return []
    groups: dict[Point, list[tuple[float, ...]]] = {}
    for obs in history:
        if obs.values is not None:
            groups.setdefault(tuple(obs.x), []).append(obs.values)
    if not groups:
        return []
    xs = list(groups)
    means = np.asarray([np.mean(groups[x], axis=0) for x in xs])  # g x m, minimised
    front = [i for i, keep in enumerate(nondominated_mask(means, [False] * means.shape[1])) if keep]
    scale = np.ptp(means[front], axis=0) + 1e-12
    spread = {i: float(np.sum(np.std(groups[xs[i]], axis=0) / scale)) for i in front}
    busy = Counter(tuple(p) for p in pending)
    count = {i: len(groups[xs[i]]) + busy[xs[i]] for i in front}  # evaluations, those in flight included
    out: list[Point] = []
    for _ in range(k):
        i = min(front, key=lambda j: (count[j], -spread[j], j))
        out.append(xs[i])
        count[i] += 1
    return out


def ask_with_repeats(optimizer: Optimizer, n: int, history: Sequence[Observation], pending: Sequence[Point], *,
                     share: float, budget: int) -> list[Point]:
    """`n` candidates: the repeats due now (front members again, first), then the optimizer's new points."""
    if share <= 0:
        return optimizer.ask(n, history, pending)
    due = repeats_due(share, budget, len(history) + len(pending), count_repeats(history, pending), n)
    again = choose_repeats(history, pending, due)
    fresh = optimizer.ask(n - len(again), history, [*pending, *again]) if n > len(again) else []
    return [*again, *fresh]
