"""Sample efficiency: hypervolume reached per evaluation by our optimizers and the peers a user would pick instead.

The problems (benchmarks/search_problems.py): on bench://digits, task arithmetic with 4 expert weights
(`task_arithmetic-4`) and TIES with 4 weights and 4 densities (`ties-8`), four objectives (each task's validation
accuracy) or two (`-2obj`: the first two tasks', the four experts still merged); a noisy variant of task
arithmetic, DARE (`dare_linear-4-2obj`: half of each task vector dropped at random, each candidate with its own
mask seed as in a job, runs scored on the mean over 4 fixed mask seeds); and on bench://tinylm (a 2-layer Llama)
TIES per component (`tinylm-ties-32-2obj`: 32 dimensions, two tasks' answer-token losses, reference point 3.0).
A dense reference front (a grid or a Sobol sample, a long NSGA-II run, then NSGA-II rounds started from the front
until one adds less than 0.5 % hypervolume) is computed once and kept, with every run's metrics, in
benchmarks/results/sample_efficiency/ (in git, so a fresh clone reports and resumes without recomputing).
Then every method runs 64 evaluations per seed through the same evaluation function:
  - ours, through `make_optimizer` exactly as a job builds them, in batches of 4 (the job default);
  - Optuna's NSGAIISampler (population as ours: max(8, 2 d)), TPESampler and GPSampler (their defaults), and
    our Sobol random search, one trial at a time (which favours them).
No method knows the budget, so the hypervolume after 16 and 32 evaluations is read off the same run as after 64.
Hypervolume (the job's reference point: 0 for every accuracy) is reported as a fraction of the reference
front's, with the evaluations each method needs to reach 95 % of it. Each run is cached, so an interrupted
benchmark continues; runs of an earlier report that this one does not make (other methods, problems or seeds)
are carried over, their fractions rescaled to this report's reference front (a run's own hypervolume does not
depend on the reference front, only on the reference point, which is fixed).
Writes benchmarks/results/sample_efficiency.json and .png.

    .venv/bin/python benchmarks/sample_efficiency.py [--seeds 5] [--problems ties-8] [--methods qnehvi,map]

`--screen N` tries variants cheaply: each run stops after N evaluations (unfinished ones go on from
benchmarks/.cache/screen/), and it prints HV@16, HV@32 and the evaluations to the best peer's kept HV@64, per seed
and on the mean curve; nothing is written to the kept results or the report.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from search_problems import (  # noqa: E402
    PROBLEMS,
    Problem,
    open_problem,
    problem_spec,
    reference_front,
    reference_path,
)

from mergefront.optimizers import Observation, make_optimizer, nondominated_mask  # noqa: E402
from mergefront.optimizers.qnehvi import AcquisitionSettings  # noqa: E402
from mergefront.optimizers.repeats import ask_with_repeats  # noqa: E402
from mergefront.service.settings import Settings  # noqa: E402

CACHE = HERE / "results" / "sample_efficiency"
PARTIAL = HERE / ".cache" / "sample_efficiency"  # runs not finished yet (not in git)
SCREEN = HERE / ".cache" / "screen"  # screening runs (--screen): never kept
RESULTS = HERE / "results"
BUDGETS = (16, 32, 48, 64)
TARGET = 0.95
OURS = ("auto", "hybrid", "qnehvi", "map", "map-nested", "saea", "nsga2", "random")
# benchmark names that are not optimizer names: the spec's optimizer, then attributes set on the optimizer built
OPTIMIZERS: dict[str, dict[str, object]] = {"map-nested": {"name": "map", "nested": True},
                                            "hybrid-prior": {"name": "hybrid"},
                                            "hybrid-prior-design": {"name": "hybrid"},
                                            "hybrid-refine": {"name": "hybrid"},
                                            "hybrid-refine-wide": {"name": "hybrid"},
                                            "hybrid-warp": {"name": "hybrid"},
                                            "hybrid-effort": {"name": "hybrid"},
                                            "hybrid-gps": {"name": "hybrid"},
                                            "hybrid-design4": {"name": "hybrid", "initial_points": 4},
                                            "hybrid-design12": {"name": "hybrid", "initial_points": 12},
                                            "hybrid-refine-wide-warp": {"name": "hybrid"},
                                            "hybrid-design4-refine-wide-warp": {"name": "hybrid", "initial_points": 4},
                                            "hybrid-refine-wide-warp-half": {"name": "hybrid"},
                                            "hybrid-refine-means-half": {"name": "hybrid"},
                                            # a quarter of the spec's budget (48) on front members again, new seeds;
                                            # with auto's pick when it was measured (hybrid, no refinement)
                                            "auto-reevaluate": {"name": "hybrid", "reevaluate": 0.25},
                                            "qnehvi-reevaluate": {"name": "qnehvi", "reevaluate": 0.25}}
# the wider refinement with the GPs on the logit of the accuracies (auto's pick for expert weights without masks)
WIDE_WARP: dict[str, object] = {"refine": 0.25, "refine_radius": 0.2,
                                "settings": AcquisitionSettings(outcome_warp="logit")}
VARIANTS: dict[str, dict[str, object]] = {  # measured and not kept as the default (docs/optimizers.md says why)
    "hybrid-prior": {"prior_mean": True},  # the R² switch, then GPs whose prior mean is the fitted quadratic
    "hybrid-prior-design": {"switch": "design", "prior_mean": True},  # those GPs right after MAP's design
    "hybrid-refine": {"refine": 0.25},  # a quarter of the points after the design in boxes around the front's ends
    "hybrid-refine-wide": {"refine": 0.25, "refine_radius": 0.2},  # the same, boxes twice as wide
    "hybrid-warp": {"settings": AcquisitionSettings(outcome_warp="logit")},  # GPs on the logit of accuracies
    "hybrid-effort": {"settings": AcquisitionSettings(num_restarts=10, raw_samples=512)},  # harder maximisation
    "hybrid-gps": {"switch": "design"},  # constant-mean GPs right after MAP's design
    "hybrid-design4": {},  # the one-hot points alone as the design
    "hybrid-design12": {},  # one-hot points and 8 Sobol points
    "hybrid-refine-wide-warp": WIDE_WARP,
    "hybrid-design4-refine-wide-warp": WIDE_WARP,  # the same, the one-hot points alone as the design
    "hybrid-refine-wide-warp-half": {**WIDE_WARP, "refine_until": 32},  # refining in the first 32 of 64 only
    "hybrid-refine-means-half": {"refine": 0.25, "refine_means": True, "refine_until": 32},  # DARE's, the same
}
PEERS = ("optuna-nsga2", "optuna-tpe", "optuna-gp")
BATCH = 4


def run_record(problem: Problem, X: np.ndarray, Y: np.ndarray, proposing: float) -> dict:
    """What a run keeps: its metrics (a noisy problem's truth at its points, and what it observed) and seconds."""
    if problem.noisy:
        return {"X": X.tolist(), "Y": [list(problem.truth(x)) for x in X], "observed": Y.tolist(),
                "proposal_seconds": proposing}
    return {"Y": Y.tolist(), "proposal_seconds": proposing}


def run_ours(problem: Problem, name: str, seed: int, budget: int,
             partial_dir: Path = PARTIAL) -> tuple[np.ndarray, np.ndarray, float]:
    """The metrics the run saw (`budget x m`) in evaluation order, and the seconds spent proposing; the run so far
    is kept in `partial_dir` after every batch."""
    spec = problem_spec(problem.name, {**OPTIMIZERS.get(name, {"name": name}), "seed": seed, "batch_size": BATCH})
    opt = make_optimizer(spec, problem.space)
    for attribute, value in VARIANTS.get(name, {}).items():
        setattr(opt, attribute, value)
    sign = np.where(problem.maximize, -1.0, 1.0)  # optimizers minimise
    partial = partial_dir / f"{problem.name}-{name}-{seed}.json"  # an interrupted run goes on from its last batch
    done: dict = json.loads(partial.read_text()) if partial.exists() else {"X": [], "Y": [], "proposal_seconds": 0.0}
    history = [Observation(tuple(x), tuple(sign * np.asarray(y))) for x, y in zip(done["X"], done["Y"], strict=True)]
    proposing = float(done["proposal_seconds"])
    while len(history) < budget:
        start = time.perf_counter()
        points = ask_with_repeats(opt, min(BATCH, budget - len(history)), history, [],
                                  share=spec.optimizer.reevaluate, budget=spec.optimizer.budget)  # as the runner
        proposing += time.perf_counter() - start
        history += [Observation(x, tuple(sign * np.asarray(problem.observe(x, seed, len(history) + i))))
                    for i, x in enumerate(points)]
        X, Y = [list(o.x) for o in history], [list(sign * np.asarray(o.values)) for o in history]
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.with_suffix(".tmp").write_text(json.dumps({"X": X, "Y": Y, "proposal_seconds": proposing}))
        partial.with_suffix(".tmp").replace(partial)  # whole or not at all, even when the run is killed
    return np.asarray([o.x for o in history]), sign * np.asarray([o.values for o in history]), proposing


def _optuna_sampler(name: str, seed: int, dim: int):  # type: ignore[no-untyped-def]
    import optuna

    if name == "optuna-nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(8, 2 * dim))
    if name == "optuna-tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "optuna-gp":
        return optuna.samplers.GPSampler(seed=seed)
    raise ValueError(f"unknown peer {name!r}")


def run_peer(problem: Problem, name: str, seed: int, budget: int) -> tuple[np.ndarray, np.ndarray, float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize" if up else "minimize" for up in problem.maximize],
                                sampler=_optuna_sampler(name, seed, problem.space.dim))
    points, rows, proposing = [], [], 0.0
    for number in range(budget):
        start = time.perf_counter()
        trial = study.ask()
        x = [trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(problem.space.dim)]
        proposing += time.perf_counter() - start
        y = problem.observe(x, seed, number)
        study.tell(trial, list(y))
        points.append(x)
        rows.append(y)
    return np.asarray(points), np.asarray(rows), proposing


def run_path(problem: str, method: str, seed: int) -> Path:
    """Where one run's accuracies are kept."""
    return CACHE / "runs" / f"{problem}-{method}-{seed}.json"


def cached_run(problem: Problem, method: str, seed: int, budget: int, again: bool = False) -> dict:
    """A run's record: `Y`, the metrics it is scored on (`budget x m`, in evaluation order), and the seconds spent
    proposing; for a noisy problem also `X` (`budget x d`) and `observed`, the one draw per candidate the optimizer
    saw (`Y` is then the truth at the same points)."""
    path = run_path(problem.name, method, seed)
    if path.exists() and not again:
        return dict(json.loads(path.read_text()))
    runner: Callable[..., tuple[np.ndarray, np.ndarray, float]] = (
        run_peer if method.startswith("optuna") else run_ours)
    record = run_record(problem, *runner(problem, method, seed, budget))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    (PARTIAL / path.name).unlink(missing_ok=True)
    return record


def best_subsets(problem: Problem, ref_Y: np.ndarray, ref_hv: float,
                 sizes: tuple[int, ...] = BUDGETS) -> dict[str, float]:
    """Hypervolume fraction of the best `b` points of the reference front itself, per budget `b` (greedy).

    No method can do better with `b` evaluations than the best `b`-point subset of the true front, so this is the
    ceiling each budget's column is read against. Greedy selection finds a subset at least this good, so the true
    ceiling is this figure or (a little) higher.
    """
    chosen: list[int] = []
    out: dict[str, float] = {}
    current = 0.0
    for size in range(1, max(sizes) + 1):
        if size > len(ref_Y):  # the whole front fits in the budget
            out.update({str(b): 1.0 for b in sizes if b >= size})
            break
        gains = [-1.0 if i in chosen else problem.hypervolume(ref_Y[[*chosen, i]]) for i in range(len(ref_Y))]
        best = int(np.argmax(gains))
        chosen.append(best)
        current = gains[best]
        if size in sizes:
            out[str(size)] = current / ref_hv
    return out


def hv_curve(problem: Problem, record: dict, ref_hv: float) -> list[float]:
    """Hypervolume fraction after each evaluation (`n`) of a run's record.

    On a noisy problem, the hypervolume of what the job reports: the front of the points' observed means (a point
    evaluated more than once at the mean of its draws), each member scored on its truth. A lucky draw puts a
    point on the reported front that its truth may not deserve; that costs hypervolume, as it costs a user.
    """
    Y = np.asarray(record["Y"])
    if "observed" not in record:
        return [problem.hypervolume(Y[: k + 1]) / ref_hv for k in range(len(Y))]
    X, observed = [tuple(x) for x in record["X"]], np.asarray(record["observed"])
    curve = []
    for k in range(len(Y)):
        points = list(dict.fromkeys(X[: k + 1]))  # distinct points, first seen first
        rows = {x: [i for i in range(k + 1) if X[i] == x] for x in points}
        means = np.asarray([observed[rows[x]].mean(axis=0) for x in points])  # p x m
        truths = np.asarray([Y[rows[x][0]] for x in points])  # p x m
        curve.append(problem.hypervolume(truths[nondominated_mask(means, problem.maximize)]) / ref_hv)
    return curve


def evaluations_to(curve: list[float], target: float) -> int | None:
    return next((k + 1 for k, v in enumerate(curve) if v >= target), None)


def summarise(seeds: list[int], curves: list[list[float]], seconds: list[float]) -> dict:
    out: dict = {"seeds": seeds}
    for b in BUDGETS:
        values = [c[b - 1] for c in curves]
        out[f"hv_{b}"] = {"mean": statistics.mean(values), "std": statistics.pstdev(values)}
    hits = [evaluations_to(c, TARGET) for c in curves]
    reached = [h for h in hits if h is not None]
    out["evals_to_95"] = hits
    # a seed that never reaches the target counts as needing more than the budget (64 + 1: a lower bound)
    out["evals_to_95_mean"] = statistics.mean(h if h is not None else BUDGETS[-1] + 1 for h in hits)
    out["reached_95"] = len(reached)
    out["proposal_seconds"] = seconds
    out["proposal_seconds_mean"] = statistics.mean(seconds)
    out["curves"] = curves
    return out


def earlier_runs(entry: dict | None, ref_hv: float) -> dict[str, dict[int, tuple[list[float], float]]]:
    """Per method, seed -> (curve, proposal seconds) of an earlier report's problem entry, rescaled to `ref_hv`.

    Reports written before seeds were recorded hold seeds 0..k-1 and only the mean proposal time.
    """
    if not entry:
        return {}
    scale = entry["reference_hypervolume"] / ref_hv
    out: dict[str, dict[int, tuple[list[float], float]]] = {}
    for method, r in entry["methods"].items():
        seeds = r.get("seeds", list(range(len(r["curves"]))))
        seconds = r.get("proposal_seconds", [r["proposal_seconds_mean"]] * len(seeds))
        out[method] = {s: ([v * scale for v in c], t) for s, c, t in zip(seeds, r["curves"], seconds, strict=True)}
    return out


def _seeds_to_run(problem: str, method: str, seeds: int, cached_only: bool) -> list[int]:
    if not cached_only:
        return list(range(seeds))
    return [s for s in range(seeds) if run_path(problem, method, s).exists()]


def measure(problems: list[str], methods: list[str], seeds: int, cached_only: bool = False,
            earlier: list[dict] | None = None, rerun: tuple[str, ...] = ()) -> dict:
    settings = Settings()
    report: dict = {"target": TARGET, "budgets": list(BUDGETS), "problems": {}}
    for name in problems:
        problem = open_problem(name, settings.resolved_cache_dir)
        if cached_only and not reference_path(CACHE, name).exists():
            print(f"{name}: no kept reference front ({reference_path(CACHE, name)}), not reported", flush=True)
            continue
        ref_X, ref_Y = reference_front(problem, CACHE)
        ref_hv = problem.hypervolume(ref_Y)
        entry: dict = {"dim": int(ref_X.shape[1]), "objectives": problem.n_objectives,
                       "reference_point": problem.ref_point, "noisy": problem.noisy, "reference_hypervolume": ref_hv,
                       "reference_front_size": len(ref_Y), "best_subset": best_subsets(problem, ref_Y, ref_hv),
                       "methods": {}}
        print(f"{name}: reference hypervolume {ref_hv:.6f} ({len(ref_Y)} points); its best b points cover "
              + ", ".join(f"{v:.3f} (b = {b})" for b, v in entry["best_subset"].items()), flush=True)
        kept: dict[str, dict[int, tuple[list[float], float]]] = {}
        for report_ in earlier or []:  # later reports win
            for method, runs in earlier_runs(report_["problems"].get(name), ref_hv).items():
                kept.setdefault(method, {}).update(runs)
        for method in [*methods, *(m for m in kept if m not in methods)]:
            runs = {} if method in rerun else dict(kept.get(method, {}))
            for seed in _seeds_to_run(name, method, seeds, cached_only) if method in methods else []:
                if seed in runs and not run_path(name, method, seed).exists():
                    continue  # carried over from an earlier report; a kept run file is newer and wins
                r = cached_run(problem, method, seed, BUDGETS[-1], again=method in rerun)
                runs[seed] = (hv_curve(problem, r, ref_hv), r["proposal_seconds"])
            if not runs:
                continue
            order = sorted(runs)
            entry["methods"][method] = summarise(order, [runs[s][0] for s in order], [runs[s][1] for s in order])
            print(f"{name:<18} {method:<13} " + "  ".join(
                f"hv@{b} {entry['methods'][method][f'hv_{b}']['mean']:.3f}" for b in BUDGETS), flush=True)
        compare_with_best_peer(entry)
        report["problems"][name] = entry
    return report


def compare_with_best_peer(entry: dict) -> None:
    """Mark the best peer (random search or an Optuna sampler: the highest mean hypervolume after the full budget)
    and, per method, the evaluations its mean curve needs to reach that hypervolume (None: not within the budget).

    This is the issue's "half the evaluations of the best peer" read at a target every method can be measured
    against, where no method reaches 95 % of the reference front.
    """
    full = f"hv_{BUDGETS[-1]}"
    peers = {m: r[full]["mean"] for m, r in entry["methods"].items() if m in (*PEERS, "random")}
    if not peers:
        return
    best = max(peers, key=lambda m: peers[m])
    entry["best_peer"] = {"method": best, full: peers[best]}
    for r in entry["methods"].values():
        r["evals_to_best_peer"] = evaluations_to(list(np.mean(r["curves"], axis=0)), peers[best] - 1e-12)


def format_table(report: dict) -> str:
    """The table: per budget b, the mean (± std) hypervolume fraction and, in brackets, that mean as a fraction of
    the best b points of the reference front (what b evaluations could reach at most)."""
    head = ("| space | method | seeds | " + " | ".join(f"HV@{b} (of best {b})" for b in BUDGETS)
            + " | evals to 95 % (mean; per seed) | evals to best peer's HV@64 | proposal s / run |\n"
            + "|---|---|---|" + "---|" * len(BUDGETS) + "---|---|---|")
    lines = [head]
    for name, entry in report["problems"].items():
        best = entry.get("best_subset", {})
        if best:
            ceiling = [f"{best[str(b)]:.3f}" if str(b) in best else "" for b in BUDGETS]
            lines.append(f"| {name} | *best b points of the reference front* | | " + " | ".join(ceiling) + " | | | |")
        for method, r in entry["methods"].items():
            curves = np.asarray(r["curves"])  # seeds x budget
            cells = []
            for b in BUDGETS:
                mean, std = float(curves[:, b - 1].mean()), float(curves[:, b - 1].std())
                share = f" ({mean / best[str(b)]:.2f})" if str(b) in best else ""
                cells.append(f"{mean:.3f} ± {std:.3f}{share}")
            per_seed = ", ".join(str(h) if h is not None else ">64" for h in r["evals_to_95"])
            mean_to = f"{r['evals_to_95_mean']:.1f}" + ("" if r["reached_95"] == len(r["evals_to_95"]) else " (≥)")
            to_peer = r.get("evals_to_best_peer")
            peer = "" if "best_peer" not in entry else (">64" if to_peer is None else str(to_peer))
            if entry.get("best_peer", {}).get("method") == method:
                peer += " (best peer)"
            lines.append(f"| {name} | {method} | {len(r['evals_to_95'])} | " + " | ".join(cells)
                         + f" | {mean_to}; {per_seed} | {peer} | {r['proposal_seconds_mean']:.1f} |")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = [name for name, entry in report["problems"].items() if entry["methods"]]  # those with runs
    cols = min(2, len(problems))
    rows = -(-len(problems) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4.5 * rows), squeeze=False)
    for ax in axes.flat[len(problems):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, problems, strict=False):
        for method, r in report["problems"][name]["methods"].items():
            curves = np.asarray(r["curves"])  # seeds x budget
            n = np.arange(1, curves.shape[1] + 1)
            ax.plot(n, curves.mean(axis=0), label=method, linestyle="-" if method in OURS else "--")
            ax.fill_between(n, curves.min(axis=0), curves.max(axis=0), alpha=0.1)
        ax.axhline(TARGET, color="grey", linewidth=0.8)
        ax.set(title=f"{name} (d = {report['problems'][name]['dim']})", xlabel="evaluations",
               ylabel="hypervolume / reference", ylim=(0.0, 1.02))
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def screen(problems: list[str], methods: list[str], seeds: int, budget: int) -> None:
    """Run our `methods` for `budget` evaluations per seed and print, per problem and method, HV@16 and HV@32 (mean ±
    std; per seed) and the evaluations to the best peer's mean HV@64 of the kept runs (per seed; mean curve).
    Nothing is kept but the runs under SCREEN, which a later screen of the same method resumes."""
    settings = Settings()
    previous = RESULTS / "sample_efficiency.json"
    report = json.loads(previous.read_text()) if previous.exists() else {}
    for name in problems:
        problem = open_problem(name, settings.resolved_cache_dir)
        _, ref_Y = reference_front(problem, CACHE)
        ref_hv = problem.hypervolume(ref_Y)
        peers = {m: [hv_curve(problem, json.loads(path.read_text()), ref_hv)[-1]  # every kept seed of the peer
                     for path in sorted(run_path(name, m, 0).parent.glob(f"{name}-{m}-[0-9]*.json"))]
                 for m in (*PEERS, "random")}
        best = max((m for m in peers if peers[m]), key=lambda m: statistics.mean(peers[m]))
        target = statistics.mean(peers[best])
        reported = report.get("problems", {}).get(name, {}).get("best_peer")
        if reported:  # the report's figure: it also holds peer runs whose files were not kept
            best, target = reported["method"], reported[f"hv_{BUDGETS[-1]}"]
        print(f"{name}: best peer {best}, mean HV@64 {target:.3f}", flush=True)
        for method in methods:
            curves, seconds = [], []
            for seed in range(seeds):
                X, Y, proposing = run_ours(problem, method, seed, budget, SCREEN)
                record = {"Y": Y.tolist()} if not problem.noisy else {
                    "X": X.tolist(), "Y": [list(problem.truth(x)) for x in X], "observed": Y.tolist()}
                curves.append(hv_curve(problem, record, ref_hv))
                seconds.append(proposing)
            cells = [f"hv@{b} {statistics.mean(c[b - 1] for c in curves):.3f} ± "
                     f"{statistics.pstdev(c[b - 1] for c in curves):.3f} ("
                     + ", ".join(f"{c[b - 1]:.3f}" for c in curves) + ")" for b in (16, 32) if b <= budget]
            hits = [evaluations_to(c, target - 1e-12) for c in curves]
            to_peer = evaluations_to(list(np.mean(curves, axis=0)), target - 1e-12)
            print(f"  {method:<22} " + "  ".join(cells) + f"  to peer: {to_peer or f'>{budget}'} (per seed "
                  + ", ".join(str(h or f">{budget}") for h in hits) + f")  {statistics.mean(seconds):.1f} s/run",
                  flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--problems", default=",".join(PROBLEMS), help="the problems to run and report")
    parser.add_argument("--methods", default=",".join(OURS + PEERS))
    parser.add_argument("--cached-only", action="store_true", help="report only the runs already made")
    parser.add_argument("--fresh", action="store_true", help="do not carry over the runs of the earlier report")
    parser.add_argument("--earlier", action="append", default=[], type=Path,
                        help="more earlier reports to carry runs over from (before the last one; repeatable)")
    parser.add_argument("--rerun", default="",
                        help="methods to run again (after a change): their kept and earlier runs are replaced")
    parser.add_argument("--screen", type=int, default=0,
                        help="screen: stop each run of ours after this many evaluations and keep nothing")
    args = parser.parse_args(argv)
    if args.screen:
        screen(args.problems.split(","), args.methods.split(","), args.seeds, args.screen)
        return 0
    previous = RESULTS / "sample_efficiency.json"
    paths = [*args.earlier, *([previous] if previous.exists() else [])]
    earlier = [] if args.fresh else [json.loads(p.read_text()) for p in paths]
    report = measure(args.problems.split(","), args.methods.split(","), args.seeds, args.cached_only, earlier,
                     tuple(m for m in args.rerun.split(",") if m))
    for report_ in reversed(earlier):  # problems this run did not measure stay as the latest report has them
        for name, entry in report_["problems"].items():
            report["problems"].setdefault(name, entry)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sample_efficiency.json").write_text(json.dumps(report, indent=1))
    plot(report, RESULTS / "sample_efficiency.png")
    print(format_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
