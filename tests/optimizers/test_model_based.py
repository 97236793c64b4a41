"""What each model-based optimizer adds beyond the contract: its initial design, reference point and screening."""

from __future__ import annotations

import numpy as np

from mergefront.optimizers import (
    AcquisitionSettings,
    MAPOptimizer,
    Observation,
    Parameter,
    QNEHVIOptimizer,
    SAEAOptimizer,
    SearchSpace,
    SobolSearch,
    build_space,
    hypervolume,
    make_optimizer,
)
from mergefront.optimizers.map import one_hot_points
from mergefront.optimizers.saea import _greedy_hypervolume
from mergefront.spec import parse_spec

SPACE = SearchSpace(tuple(Parameter(f"p{i}", 0.0, 1.0, "") for i in range(3)))
FAST = AcquisitionSettings(mc_samples=16, num_restarts=1, raw_samples=16, maxiter=15)


def _objectives(x: tuple[float, ...]) -> tuple[float, float]:
    a = np.asarray(x)
    return float(np.sum((a - 0.2) ** 2)), float(np.sum((a - 0.8) ** 2))


def _run(opt, evaluations: int) -> list[Observation]:  # type: ignore[no-untyped-def]
    history: list[Observation] = []
    while len(history) < evaluations:
        history += [Observation(x, _objectives(x)) for x in opt.ask(4, history)]
    return history


def _hv(history: list[Observation]) -> float:
    return hypervolume(np.asarray([o.values for o in history]), [2.0, 2.0], [False, False])


def test_map_starts_with_the_one_hot_merges_of_a_ties_space(spec_data: dict) -> None:
    spec = parse_spec(spec_data)
    space = build_space(spec.merge, spec.models.experts)  # 3 weights, 3 densities
    hot = one_hot_points(space)
    np.testing.assert_array_equal(hot, [[1, 0, 0, 1, 1, 1], [0, 1, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]])
    first = MAPOptimizer(space, 3, seed=0).ask(4, [])
    np.testing.assert_array_equal(np.asarray(first[:3]), hot)


def test_map_and_qnehvi_beat_random_search_on_a_smooth_trade_off() -> None:
    random_hv = _hv(_run(SobolSearch(SPACE, 2, 0), 16))
    assert _hv(_run(MAPOptimizer(SPACE, 2, 0, initial_points=6), 16)) > random_hv
    assert _hv(_run(QNEHVIOptimizer(SPACE, 2, 0, initial_points=6, settings=FAST), 16)) > random_hv


def test_map_reports_each_surrogates_held_out_r2() -> None:
    history = _run(SobolSearch(SPACE, 2, 1), 20)
    reports = MAPOptimizer(SPACE, 2, 0).surrogate_reports(history)
    assert [(r.objective, r.n_points) for r in reports] == [(0, 20), (1, 20)]
    assert all(r.r2 > 0.99 for r in reports)  # both objectives are quadratics
    assert MAPOptimizer(SPACE, 2, 0).surrogate_reports(history[:2]) == []


def test_qnehvi_on_a_long_history_keeps_the_likeliest_pareto_points_as_its_baseline(monkeypatch) -> None:
    import mergefront.optimizers.nehvi_acquisition as nehvi

    seen = []
    original = nehvi.qLogNoisyExpectedHypervolumeImprovement

    def spy(**kwargs):  # type: ignore[no-untyped-def]
        seen.append((kwargs["X_baseline"].shape[0], kwargs["alpha"], kwargs["sampler"].sample_shape[0]))
        return original(**kwargs)

    monkeypatch.setattr(nehvi, "qLogNoisyExpectedHypervolumeImprovement", spy)
    history = _run(SobolSearch(SPACE, 2, 5), nehvi.LARGE_HISTORY + 8)
    known = {o.x for o in history}
    proposed = QNEHVIOptimizer(SPACE, 2, 0, settings=FAST).ask(2, history)
    assert len(proposed) == 2 and not known & set(proposed)
    assert all(0.0 <= v <= 1.0 for x in proposed for v in x)
    baseline, alpha, samples = seen[-1]
    assert baseline <= nehvi.LARGE_BASELINE and alpha == nehvi.LARGE_ALPHA and samples <= FAST.mc_samples


def test_qnehvi_infers_its_reference_point_once_from_the_initial_design() -> None:
    opt = QNEHVIOptimizer(SPACE, 2, 0, initial_points=4)
    history = _run(SobolSearch(SPACE, 2, 3), 4)
    ref = opt.reference_point(history)
    values = np.asarray([o.values for o in history])
    assert np.all(ref > values.max(axis=0))  # beyond the initial design's nadir
    later = history + [Observation((0.99, 0.99, 0.99), (50.0, 50.0))]  # a much worse point afterwards
    np.testing.assert_array_equal(opt.reference_point(later), ref)
    given = QNEHVIOptimizer(SPACE, 2, 0, ref_point=[3.0, 4.0])
    np.testing.assert_array_equal(given.reference_point(history), [3.0, 4.0])


def test_make_optimizer_negates_the_specs_reference_point_for_maximised_accuracies(spec_data: dict) -> None:
    spec_data["optimizer"] = {"name": "qnehvi", "reference_point": [0.1, 0.2, 0.3]}
    spec = parse_spec(spec_data)
    opt = make_optimizer(spec, build_space(spec.merge, spec.models.experts))
    assert isinstance(opt, QNEHVIOptimizer)
    np.testing.assert_array_equal(opt.reference_point([]), [-0.1, -0.2, -0.3])
    spec_data["optimizer"] = {"name": "qnehvi"}  # none given: the job's, each accuracy's worst value
    spec = parse_spec(spec_data)
    opt = make_optimizer(spec, build_space(spec.merge, spec.models.experts))
    assert isinstance(opt, QNEHVIOptimizer)
    np.testing.assert_array_equal(opt.reference_point([]), [-v for v in spec.default_reference_point()])
    spec_data["optimizer"] = {"name": "saea", "screening_factor": 3}
    assert isinstance(make_optimizer(parse_spec(spec_data), SPACE), SAEAOptimizer)


def test_saea_screening_keeps_the_offspring_that_add_most_hypervolume() -> None:
    evaluated = np.array([[0.0, 1.0], [1.0, 0.0]])
    scores = np.array([[2.0, 2.0], [0.5, 0.5], [0.9, 0.9], [0.2, 0.6]])  # minimised
    # against reference (1.5, 1.5): (0.2, 0.6) adds 0.8 x 0.4 = 0.32, (0.5, 0.5) 0.25; after the first, 0.05
    assert _greedy_hypervolume(scores, evaluated, np.array([1.5, 1.5]), 2) == [3, 1]
    # when none adds hypervolume, the one closest to the front comes first
    assert _greedy_hypervolume(np.array([[3.0, 3.0], [1.1, 1.1]]), evaluated, np.array([1.5, 1.5]), 1) == [1]
