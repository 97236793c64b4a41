"""The hybrid optimizer: MAP's design, MAP's steps while the quadratics predict better, then qLogNEHVI on GPs whose
prior mean is the fitted quadratic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mergefront.optimizers import (
    AcquisitionSettings,
    HybridOptimizer,
    Observation,
    Parameter,
    SearchSpace,
    build_space,
    make_optimizer,
)
from mergefront.optimizers.map import one_hot_points
from mergefront.spec import parse_spec
from mergefront.surrogates.gp import fit_gp_list, quadratic_prior
from mergefront.surrogates.quadratic import QuadraticSurrogate, Warp

SPACE = SearchSpace(tuple(Parameter(f"p{i}", 0.0, 1.0, "") for i in range(3)))
FAST = AcquisitionSettings(mc_samples=16, num_restarts=1, raw_samples=16, maxiter=15)


def _quadratic(X: np.ndarray) -> np.ndarray:
    return np.stack([((X - 0.2) ** 2).sum(axis=1), ((X - 0.8) ** 2).sum(axis=1)], axis=-1)  # n x 2, minimised


def _wiggly(X: np.ndarray) -> np.ndarray:
    return np.stack([np.sin(9 * X[:, 0]) + np.cos(7 * X[:, 1]), np.sin(8 * X[:, 1] + 6 * X[:, 2])], axis=-1)


def _history(f, n: int, seed: int = 0) -> list[Observation]:  # type: ignore[no-untyped-def]
    X = np.random.default_rng(seed).random((n, SPACE.dim))
    return [Observation(tuple(map(float, x)), tuple(map(float, y))) for x, y in zip(X, f(X), strict=True)]


def test_the_torch_prior_is_the_fitted_quadratic_through_its_warp() -> None:
    X = np.random.default_rng(1).random((30, 3))
    Y = -np.clip(0.3 + 0.5 * X[:, :1] * X[:, 1:2] + 0.1 * X[:, 2:], 0.0, 1.0)  # minimised accuracies in [-1, 0]
    fit = QuadraticSurrogate.fit(X, Y, [Warp(-1.0, 0.0)]).fits[0]
    new = np.random.default_rng(2).random((7, 3))
    torch_values = quadratic_prior(fit, sign=-1.0)(torch.as_tensor(new, dtype=torch.double)).numpy()
    np.testing.assert_allclose(torch_values, -fit.predict(new), rtol=1e-9, atol=1e-12)


def test_a_quadratic_prior_mean_predicts_far_from_the_data_where_a_constant_one_cannot() -> None:
    rng = np.random.default_rng(3)
    X = rng.random((12, 3)) * 0.5  # data in one corner only
    Y = -_quadratic(X)  # maximised
    far = np.array([[0.95, 0.9, 0.85], [0.8, 0.95, 0.9]])
    fits = QuadraticSurrogate.fit(X, -Y).fits
    tX, tY = torch.as_tensor(X), torch.as_tensor(Y)
    with_prior = fit_gp_list(tX, tY, 0, priors=[quadratic_prior(f, sign=-1.0) for f in fits])
    plain = fit_gp_list(tX, tY, 0)
    with torch.no_grad():
        err_prior = np.abs(with_prior.posterior(torch.as_tensor(far)).mean.numpy() + _quadratic(far)).max()
        err_plain = np.abs(plain.posterior(torch.as_tensor(far)).mean.numpy() + _quadratic(far)).max()
    assert err_prior < 0.05 < err_plain
    with pytest.raises(ValueError, match="1 prior means for 2 objectives"):
        fit_gp_list(tX, tY, 0, priors=[quadratic_prior(fits[0])])


def test_maps_steps_while_the_quadratics_predict_better_then_the_gps() -> None:
    opt = HybridOptimizer(SPACE, 2, 0, initial_points=4, settings=FAST)
    quad_history = _history(_quadratic, 16)
    X, Y = np.asarray([o.x for o in quad_history]), np.asarray([o.values for o in quad_history])
    assert not opt.uses_gps(X, Y, QuadraticSurrogate.fit(X, Y))  # the quadratics are exact here
    wiggly_history = _history(_wiggly, 40)
    X, Y = np.asarray([o.x for o in wiggly_history]), np.asarray([o.values for o in wiggly_history])
    assert opt.uses_gps(X, Y, QuadraticSurrogate.fit(X, Y))
    design = HybridOptimizer(SPACE, 2, 0, initial_points=4, settings=FAST, switch="design")
    assert design.uses_gps(X, Y, QuadraticSurrogate.fit(X, Y))
    with pytest.raises(ValueError, match="switch must be"):
        HybridOptimizer(SPACE, 2, 0, switch="later")  # type: ignore[arg-type]


def test_twins_in_the_history_do_not_pass_the_switch_to_the_gps() -> None:
    points = np.random.default_rng(0).random((12, SPACE.dim))
    X = np.repeat(points, 2, axis=0)  # every point evaluated again, new mask seed: a new draw of the noise
    Y = _quadratic(X) + 0.02 * np.random.default_rng(10).normal(size=(24, 2))
    opt = HybridOptimizer(SPACE, 2, 0, initial_points=4, settings=FAST)
    quad = QuadraticSurrogate.fit(X, Y)
    assert min(quad.r2) > 0.95  # the quadratics hold out a point (both its draws) and still predict it
    assert max(opt._gp_r2(X, Y)) < 0.95  # the GPs, held out the same way, do not; a twin left in would predict it
    assert not opt.uses_gps(X, Y, quad)


def test_a_job_builds_it_with_maps_one_hot_design_capped_by_the_budget(spec_data: dict) -> None:
    spec_data["optimizer"] = {"name": "hybrid", "budget": 24}
    spec = parse_spec(spec_data)
    space = build_space(spec.merge, spec.models.experts)  # TIES over 3 experts: 6 dimensions
    opt = make_optimizer(spec, space)
    assert isinstance(opt, HybridOptimizer) and opt.initial_points == 6  # default 3 + 6, cut to a quarter of 24
    assert opt.ref_point is not None and list(opt.ref_point) == [0.0, 0.0, 0.0]  # accuracies' worst, minimised
    first = opt.ask(4, [])
    np.testing.assert_array_equal(np.asarray(first[:3]), one_hot_points(space))
    assert opt.surrogate_reports([]) == []


def test_refinement_proposes_inside_small_boxes_around_the_fronts_ends_in_turn_and_replays() -> None:
    history = _history(_quadratic, 12)
    X, Y = np.asarray([o.x for o in history]), np.asarray([o.values for o in history])
    opt = HybridOptimizer(SPACE, 2, 0, initial_points=4, settings=FAST, refine=1.0, refine_radius=0.05)
    anchors = opt.anchors(X, Y)  # the evaluated point best on each objective
    np.testing.assert_array_equal(anchors, X[[Y[:, 0].argmin(), Y[:, 1].argmin()]])
    asked = np.asarray(opt.ask(4, history))  # every point past the design refines at 1.0
    assert ((asked >= 0.0) & (asked <= 1.0)).all()
    dist = np.abs(asked[:, None, :] - anchors[None, :, :]).max(axis=-1)  # 4 x 2, in the box's (max) norm
    assert (dist.min(axis=1) <= 0.05 + 1e-12).all()  # each inside an anchor's box
    assert sorted(dist.argmin(axis=1).tolist()) == [0, 0, 1, 1]  # the two ends in turn
    again = HybridOptimizer(SPACE, 2, 0, initial_points=4, settings=FAST, refine=1.0, refine_radius=0.05)
    assert again.ask(4, history) == opt.ask(4, history)  # a pure function of the history and the seed
    np.testing.assert_allclose(opt.box(np.array([0.02, 0.5, 0.99])), [[0.0, 0.45, 0.94], [0.07, 0.55, 1.0]])


def test_refinement_takes_its_share_of_the_points_after_the_design() -> None:
    quarter = HybridOptimizer(SPACE, 2, 0, initial_points=4, settings=FAST, refine=0.25, refine_radius=0.05)
    assert [quarter.refinements_due(after, 4) for after in (0, 4, 8)] == [1, 1, 1]
    assert [quarter.refinements_due(after, 1) for after in range(8)] == [0, 0, 0, 1, 0, 0, 0, 1]
    assert HybridOptimizer(SPACE, 2, 0).refinements_due(0, 4) == 0  # off by default
    until = HybridOptimizer(SPACE, 2, 0, initial_points=4, settings=FAST, refine=0.25, refine_until=12)
    assert [until.refinements_due(after, 4) for after in (0, 4, 8, 12)] == [1, 1, 0, 0]  # none from point 12 on
    assert [until.refinements_due(after, 1) for after in range(10)] == [0, 0, 0, 1, 0, 0, 0, 1, 0, 0]
    history = _history(_quadratic, 12)
    X, Y = np.asarray([o.x for o in history]), np.asarray([o.values for o in history])
    asked = np.asarray(quarter.ask(4, history))
    near = np.abs(asked[:, None, :] - quarter.anchors(X, Y)[None, :, :]).max(axis=-1).min(axis=1) <= 0.05 + 1e-12
    assert near[-1]  # the last of the four is the refinement
    for bad in ({"refine": -0.1}, {"refine": float("nan")}, {"refine": 1.5}, {"refine_radius": 0.0},
                {"refine_radius": float("inf")}, {"refine_until": 0}):
        with pytest.raises(ValueError, match="refine"):
            HybridOptimizer(SPACE, 2, 0, **bad)  # type: ignore[arg-type]


def test_warped_outcomes_fit_the_gps_on_logits_and_score_the_acquisition_on_accuracies(monkeypatch) -> None:
    from mergefront.optimizers import nehvi_acquisition

    seen: list[torch.Tensor] = []
    fit = nehvi_acquisition.fit_gp_list
    monkeypatch.setattr(nehvi_acquisition, "fit_gp_list", lambda X, Y, *a: seen.append(Y) or fit(X, Y, *a))
    history = [Observation(o.x, tuple(-np.clip(np.asarray(o.values), 0.02, 0.98)))  # accuracies, minimised
               for o in _history(lambda X: 1.0 - _quadratic(X), 12)]
    warped = AcquisitionSettings(mc_samples=16, num_restarts=1, raw_samples=16, maxiter=15, outcome_warp="logit")
    opt = HybridOptimizer(SPACE, 2, 0, initial_points=4, settings=warped, switch="design",
                          value_bounds=[(-1.0, 0.0), (-1.0, 0.0)])
    assert opt.maximised_bounds() == [(0.0, 1.0), (0.0, 1.0)]
    asked = np.asarray(opt.ask(4, history))
    assert asked.shape == (4, SPACE.dim) and ((asked >= 0.0) & (asked <= 1.0)).all()
    accuracy = -np.asarray([o.values for o in history])  # 12 x 2
    np.testing.assert_allclose(seen[-1].numpy(), np.log(accuracy / (1.0 - accuracy)), rtol=1e-9)
    logit = nehvi_acquisition.OutcomeWarp(0.0, 1.0)
    back = nehvi_acquisition._unwarp([logit, None])(torch.tensor([[[0.0, 5.0], [2.0, -3.0]]]))
    np.testing.assert_allclose(back.numpy(), [[[0.5, 5.0], [1.0 / (1.0 + np.exp(-2.0)), -3.0]]])  # identity unwarped
    y = np.array([0.003, 0.1, 0.5, 0.97])
    np.testing.assert_allclose(logit.back(torch.as_tensor(logit.forward(y))).numpy(), y)
    with pytest.raises(ValueError, match="outcome_warp must be one of"):
        nehvi_acquisition._warps("probit", [(0.0, 1.0)], 1)
    seen.clear()
    HybridOptimizer(SPACE, 2, 0, initial_points=4, settings=FAST, switch="design",
                    value_bounds=[(-1.0, 0.0), (-1.0, 0.0)]).ask(4, history)
    np.testing.assert_allclose(seen[-1].numpy(), accuracy)  # off by default: the accuracies themselves


def test_a_jobs_outcome_warp_reaches_the_hybrids_gps_and_belongs_to_the_hybrid_alone(spec_data: dict) -> None:
    spec_data["optimizer"] = {"name": "hybrid", "budget": 24, "outcome_warp": "logit"}
    spec = parse_spec(spec_data)
    opt = make_optimizer(spec, build_space(spec.merge, spec.models.experts))
    assert isinstance(opt, HybridOptimizer) and opt.settings.outcome_warp == "logit"
    assert opt.maximised_bounds() == [(0.0, 1.0)] * 3  # accuracies: what the logit is taken of
    spec_data["optimizer"] = {"name": "hybrid", "budget": 24}
    spec = parse_spec(spec_data)
    assert make_optimizer(spec, build_space(spec.merge, spec.models.experts)).settings.outcome_warp == "none"
    spec_data["optimizer"] = {"name": "qnehvi", "outcome_warp": "logit"}
    with pytest.raises(Exception, match="outcome_warp is an option of hybrid"):
        parse_spec(spec_data)
