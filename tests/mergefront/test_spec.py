from __future__ import annotations

import copy
from pathlib import Path

import pytest

from mergefront.errors import InvalidSpecError
from mergefront.spec import load_spec, parse_spec
from mergefront.suites import BUILTIN_SUITES

ROOT = Path(__file__).resolve().parents[2]


def _with(spec: dict, path: str, value: object) -> dict:
    spec = copy.deepcopy(spec)
    *parents, last = path.split(".")
    node = spec
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    if value is _DELETE:
        del node[int(last) if last.isdigit() else last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return spec


_DELETE = object()


def test_example_spec_is_valid() -> None:
    spec = load_spec(ROOT / "examples" / "digits.yaml")
    assert spec.merge.method == "ties" and len(spec.models.experts) >= 4


def test_ties_gets_default_density_and_task_arithmetic_has_none(spec_data: dict) -> None:
    spec = parse_spec(_with(spec_data, "merge.density", _DELETE))
    assert spec.merge.density is not None and spec.merge.density.low == pytest.approx(0.1)
    ta = parse_spec(_with(spec_data, "merge", {"method": "task_arithmetic"}))
    assert ta.merge.density is None


@pytest.mark.parametrize(("path", "value", "loc"), [
    ("merge.method", "frankenmerge", ("merge", "method")),
    ("models.experts", [], ("models", "experts")),
    ("models.experts.1", "bench://digits/nope", ("models", "experts", 1)),
    ("optimizer.budget", -3, ("optimizer", "budget")),
    ("optimizer.batch_size", "four", ("optimizer", "batch_size")),
    ("objectives.0.task", "sorting", ("objectives", 0, "task")),
    ("optimizer.reference_point", [0.0], ("optimizer", "reference_point")),
    ("merge.weight", {"low": 1.0, "high": 0.5}, ("merge", "weight")),
    ("models.base", "hf://org/model", ("models", "base")),
    ("models.experts.2", "bench://digits/rotated", ("models", "experts", 2)),
])
def test_bad_spec_names_the_field(spec_data: dict, path: str, value: object, loc: tuple) -> None:
    with pytest.raises(InvalidSpecError) as info:
        parse_spec(_with(spec_data, path, value))
    assert info.value.loc[: len(loc)] == loc, str(info.value)


def test_density_with_task_arithmetic_is_rejected(spec_data: dict) -> None:
    with pytest.raises(InvalidSpecError, match="density"):
        parse_spec(_with(spec_data, "merge.method", "task_arithmetic"))


def test_unknown_field_is_rejected(spec_data: dict) -> None:
    with pytest.raises(InvalidSpecError) as info:
        parse_spec(_with(spec_data, "optimizer.budgett", 3))
    assert info.value.loc == ("optimizer", "budgett")


def test_light_suite_registry_matches_the_built_suite() -> None:
    from mergefront.evaluators.suites import digits

    assert BUILTIN_SUITES["digits"] == tuple(digits.TASKS)


@pytest.mark.parametrize(("merge", "loc", "message"), [
    ({"method": "task_arithmetic", "density": 0.5}, ("merge", "density"), "not a parameter of task_arithmetic"),
    ({"method": "ties", "density": {"low": 0.0, "high": 1.0}}, ("merge", "density"), "must lie in"),
    ({"method": "ties", "weight": {"low": 0, "high": 1, "granularity": "layer"}},
     ("merge", "weight", "granularity", "kind"), "model"),
    ({"method": "ties", "weight": {"low": 0, "high": 1, "granularity": {"filters": []}}}, ("merge", "weight"),
     "at least one"),
    ({"method": "slerp"}, ("models", "experts"), "at most 1"),
    ({"method": "model_stock"}, ("merge", "method"), "no parameter to search"),
    ({"method": "task_arithmetic", "weight": 0.5}, ("merge", "method"), "nothing to search"),
    ({"method": "della", "density": {"low": 0.1, "high": 0.9}, "epsilon": 0.2}, ("merge", "epsilon"),
     r"density \+- epsilon"),
    ({"method": "linear", "normalize": True, "rescale": True}, ("merge", "rescale"), "no rescale switch"),
])
def test_merge_parameters_are_checked_against_the_method(spec_data: dict, merge: dict, loc: tuple,
                                                         message: str) -> None:
    with pytest.raises(InvalidSpecError, match=message) as info:
        parse_spec(_with(spec_data, "merge", merge))
    assert info.value.loc == loc


def test_merge_parameters_take_mergekit_names_and_shorthands(spec_data: dict) -> None:
    spec = parse_spec(_with(spec_data, "merge", {
        "method": "breadcrumbs_ties", "gamma": 0.02, "lambda": {"low": 0.5, "high": 2.0},
        "weight": {"low": 0, "high": 1, "granularity": {"layers": 4}}, "normalize": False}))
    assert spec.merge.fixed() == {"gamma": 0.02}
    assert [name for name, _ in spec.merge.searched()] == ["weight", "density", "lambda"]
    dumped = spec.merge.model_dump(mode="json")
    assert dumped["lambda"]["high"] == 2.0 and dumped["weight"]["granularity"]["groups"] == 4
    assert parse_spec(spec.model_dump(mode="json")) == spec  # what is stored reads back the same
