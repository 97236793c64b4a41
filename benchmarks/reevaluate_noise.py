"""What `optimizer.reevaluate` buys on a noisy problem: how far the reported front's hypervolume is from the truth.

On `dare_linear-4-2obj` (benchmarks/search_problems.py: DARE drops half of each task vector at random, two digits
accuracies), each run asks and observes as a job does: evaluation `number` of a run with seed `s` draws its masks
from its own seed, and with `--shares 0.25` a quarter of the budget re-evaluates front members
(`mergefront.optimizers.repeats`, the code the runner and ask/tell use). A run reports the front of its points'
means (`mergefront.service.front`'s definition); that front is then scored on the truth, each member's mean over the
problem's fixed truth seeds. Printed per method and share (mean ± std over seeds):

- reported: the hypervolume the job would show (its front's means),
- truth of reported: the same members' true hypervolume (what the user gets by picking from that front),
- optimism: reported minus truth of reported (how much the noise flatters the front),
- truth of all: the true hypervolume of every distinct point evaluated (what the run found, had it known).

    .venv/bin/python benchmarks/reevaluate_noise.py --methods nsga2,qnehvi --seeds 3 --budget 32
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from search_problems import Problem, open_problem, problem_spec  # noqa: E402

from mergefront.optimizers import Observation, make_optimizer, nondominated_mask  # noqa: E402
from mergefront.optimizers.base import History  # noqa: E402
from mergefront.optimizers.repeats import ask_with_repeats  # noqa: E402
from mergefront.service.settings import Settings  # noqa: E402

PROBLEM = "dare_linear-4-2obj"
BATCH = 4
OUT = HERE / "results" / "reevaluate_noise.json"


def run(problem: Problem, method: str, share: float, seed: int, budget: int) -> dict[str, float]:
    """One run as a job makes it; its front's reported and true hypervolumes."""
    spec = problem_spec(PROBLEM, {"name": method, "budget": budget, "batch_size": BATCH, "seed": seed,
                                  "reevaluate": share})
    optimizer = make_optimizer(spec, problem.space)
    sign = np.where(problem.maximize, -1.0, 1.0)  # minimised form for the optimizer
    history = History(problem.space.dim, problem.n_objectives)
    told: dict[tuple[float, ...], list[tuple[float, ...]]] = {}
    started = time.perf_counter()
    while len(history) < budget:
        xs = ask_with_repeats(optimizer, min(BATCH, budget - len(history)), history, [], share=share, budget=budget)
        for x in xs:
            number = len(history)
            values = problem.observe(x, seed, number)
            told.setdefault(tuple(x), []).append(values)
            history.add(number, Observation(tuple(x), tuple(float(v) for v in sign * np.asarray(values))))
    seconds = time.perf_counter() - started
    points = list(told)
    means = np.asarray([np.mean(told[x], axis=0) for x in points])  # p x m
    members = [points[i] for i, keep in enumerate(nondominated_mask(means, problem.maximize)) if keep]
    truth = {x: problem.truth(x) for x in points}
    reported = problem.hypervolume(np.asarray([np.mean(told[x], axis=0) for x in members]))
    true_front = problem.hypervolume(np.asarray([truth[x] for x in members]))
    return {"reported": reported, "truth_of_reported": true_front, "optimism": reported - true_front,
            "truth_of_all": problem.hypervolume(np.asarray(list(truth.values()))), "points": len(points),
            "members": len(members), "repeats": history.repeats, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="nsga2,map,qnehvi")
    parser.add_argument("--shares", default="0,0.25")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=32)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    problem = open_problem(PROBLEM, Settings().resolved_cache_dir)
    rows = []
    for method in args.methods.split(","):
        for share in (float(s) for s in args.shares.split(",")):
            runs = [run(problem, method, share, seed, args.budget) for seed in range(args.seeds)]
            rows.append({"method": method, "share": share, "budget": args.budget, "runs": runs})
            args.out.parent.mkdir(parents=True, exist_ok=True)  # kept after each row: a run cut short keeps them
            args.out.write_text(json.dumps({"problem": PROBLEM, "batch": BATCH, "rows": rows}, indent=1))
            stats = "  ".join(f"{k} {np.mean([r[k] for r in runs]):.4f} ± {np.std([r[k] for r in runs]):.4f}"
                              for k in ("reported", "truth_of_reported", "optimism", "truth_of_all"))
            members, seconds = np.mean([r["members"] for r in runs]), np.mean([r["seconds"] for r in runs])
            print(f"{method:7s} reevaluate {share:<4g} {stats}  repeats {runs[0]['repeats']}  members {members:.1f}  "
                  f"s/run {seconds:.0f}", flush=True)


if __name__ == "__main__":
    main()
