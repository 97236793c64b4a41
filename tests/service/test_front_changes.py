"""The front kept in memory and stored as its changes: the same front and hypervolume as a full recomputation at
every step, the front at any evaluation through the API, and a server's in-memory copy of a job read again when
someone else wrote to the job."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from sqlalchemy import func, select

from mergefront.optimizers import hypervolume, nondominated_mask
from mergefront.service import asktell
from mergefront.service import repository as repo
from mergefront.service.db import session_scope
from mergefront.service.front import FrontState
from mergefront.service.models import ParetoChange, ParetoSnapshot
from mergefront.service.settings import Settings
from mergefront.spec import parse_spec
from tests.service.test_ask_tell import EXTERNAL_SPEC, toy


@pytest.mark.parametrize("m", [2, 3])
def test_incremental_front_is_the_full_recomputation_at_every_step(m: int) -> None:
    rng = np.random.default_rng(m)
    values = rng.integers(0, 6, size=(160, m)).astype(float)  # a coarse grid: many ties and equal points
    maximize = (True, False, True)[:m]
    ref = tuple(-1.0 if up else 7.0 for up in maximize)
    front = FrontState(maximize=maximize, reference=ref)
    members: set[int] = set()
    for k, row in enumerate(values):
        entered, left = front.add(k, tuple(row))
        members = (members | set(entered)) - set(left)
        assert set(front.members) == members
        mask = nondominated_mask(values[:k + 1], maximize)
        assert members == {i for i in range(k + 1) if mask[i]}, k
        assert front.front_hypervolume() == pytest.approx(hypervolume(values[:k + 1], ref, maximize))


@pytest.mark.parametrize("m", [2, 3])
def test_a_front_with_repeats_is_the_full_recomputation_on_the_means_at_every_step(m: int) -> None:
    rng = np.random.default_rng(10 + m)
    maximize = (True, False, True)[:m]
    ref = tuple(-1.0 if up else 7.0 for up in maximize)
    front = FrontState(maximize=maximize, reference=ref, points={})
    told: dict[int, list[tuple[float, ...]]] = {}  # point -> its evaluations' values
    for k in range(200):
        if k % 3 == 0 or not told:  # a new point; else a repeat, mostly of a front member (a member may have
            point = k                 # left the front while its repeat was in flight)
        else:
            point = int(rng.choice(list(front.members) if rng.random() < 0.6 else list(told)))
        values = tuple(float(v) for v in rng.integers(0, 6, size=m))
        copy_before = front.copy()
        front.add(k, values, point)
        told.setdefault(point, []).append(values)
        ids = list(told)
        means = np.asarray([np.mean(told[i], axis=0) for i in ids])
        mask = nondominated_mask(means, maximize)
        assert set(front.members) == {i for i, keep in zip(ids, mask, strict=True) if keep}, k
        for i in front.members:
            assert front.members[i] == pytest.approx(tuple(np.mean(told[i], axis=0)))
        assert front.front_hypervolume() == pytest.approx(hypervolume(means, ref, maximize))
        # a transaction tried again adds the same evaluation to a copy of the state before: the same front
        retry = copy_before.copy()
        retry.add(k, values, point)
        assert retry.members == front.members


def test_front_at_any_evaluation_is_the_front_of_what_had_completed(api, sessions) -> None:
    spec = copy.deepcopy(EXTERNAL_SPEC) | {"resources": {"ask_timeout": 600.0}}
    spec["optimizer"] = {"name": "random", "budget": 10, "batch_size": 2, "seed": 3}
    told: list[tuple[int, tuple[float, float]]] = []
    with api(run_jobs=False) as http:
        job_id = http.post("/v1/jobs", json=spec).json()["id"]
        for _ in range(5):
            for c in http.post(f"/v1/jobs/{job_id}/ask", json={"n": 2}).json():
                metrics = toy(c["params"])
                assert http.post(f"/v1/evaluations/{c['id']}/tell", json={"metrics": metrics}).status_code == 200
                told.append((c["id"], (metrics["size"], metrics["distance"])))
        latest = http.get(f"/v1/jobs/{job_id}/pareto").json()
        ref = latest["reference_point"]  # fixed after the first batch of two
        for k in range(2, 11):
            values = [v for _, v in told[:k]]
            mask = nondominated_mask(values, [True, False])
            front = http.get(f"/v1/jobs/{job_id}/pareto", params={"n_completed": k}).json()
            assert front["n_completed"] == k
            expected = {i for (i, _), keep in zip(told[:k], mask, strict=True) if keep}
            assert {m["id"] for m in front["members"]} == expected
            assert front["hypervolume"] == pytest.approx(hypervolume(values, ref, [True, False]))
        assert http.get(f"/v1/jobs/{job_id}/pareto", params={"n_completed": 1}).json()["members"] == []
        assert latest == http.get(f"/v1/jobs/{job_id}/pareto", params={"n_completed": 10}).json()
        assert http.get(f"/v1/jobs/{job_id}/pareto", params={"n_completed": -1}).status_code == 422
        history = http.get(f"/v1/jobs/{job_id}/hypervolume").json()["points"]
        assert [p["n_completed"] for p in history] == list(range(2, 11))
    with session_scope(sessions) as s:  # changes, not copies: far fewer rows than the fronts' sizes summed
        changes = s.scalar(select(func.count()).select_from(ParetoChange).where(ParetoChange.job_id == job_id))
        sizes = s.scalar(select(func.sum(ParetoSnapshot.front_size)).where(ParetoSnapshot.job_id == job_id))
        replay = FrontState(maximize=(True, False), reference=tuple(ref))
        expected = 0
        for k, (i, v) in enumerate(told):
            entered, left = replay.add(i, v)
            expected += len(replay.members) if k == 1 else len(entered) + len(left) if k > 1 else 0
        assert changes == expected and changes < sizes
        assert repo.front_member_ids(session=s, job_id=job_id) == {m["id"] for m in latest["members"]}


def test_a_server_reads_a_job_again_when_another_replica_or_a_rollback_changed_it(
        sessions, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = copy.deepcopy(EXTERNAL_SPEC) | {"resources": {"ask_timeout": 600.0}}
    spec["optimizer"] = {"name": "random", "budget": 4, "batch_size": 1, "seed": 0}
    here, there = asktell.JobMemory(), asktell.JobMemory()
    with session_scope(sessions) as s:
        job_id = repo.create_job(session=s, spec=parse_spec(spec)).id
    monkeypatch.setattr(asktell, "MEMORY", here)
    with session_scope(sessions) as s:
        first = [(r.id, dict(r.params)) for r in asktell.ask(session=s, job_id=job_id, n=2, settings=settings)]
    monkeypatch.setattr(asktell, "MEMORY", there)  # another replica tells both and asks one more
    with session_scope(sessions) as s:
        for i, params in first:
            asktell.tell(session=s, evaluation_id=i, metrics=toy(params))
        third = asktell.ask(session=s, job_id=job_id, n=1, settings=settings)
        assert [r.number for r in third] == [2]
        third_id, third_params = third[0].id, dict(third[0].params)
    monkeypatch.setattr(asktell, "MEMORY", here)  # this one's copy is stale: it reads the job again
    with session_scope(sessions) as s:
        fourth = asktell.ask(session=s, job_id=job_id, n=5, settings=settings)
        assert [r.number for r in fourth] == [3]  # 2 finished + 1 running + 1 = the budget
        fourth_id, fourth_params = fourth[0].id, dict(fourth[0].params)
    with pytest.raises(RuntimeError), session_scope(sessions) as s:  # a tell whose transaction rolls back
        asktell.tell(session=s, evaluation_id=third_id, metrics=toy(third_params))
        raise RuntimeError("the commit never happens")
    with session_scope(sessions) as s:  # ...leaves nothing behind, in memory either
        assert repo.get_evaluation(session=s, evaluation_id=third_id).state == "running"
        asktell.tell(session=s, evaluation_id=third_id, metrics=toy(third_params))
        asktell.tell(session=s, evaluation_id=fourth_id, metrics=toy(fourth_params))
        assert repo.get_job(session=s, job_id=job_id).state == "completed"
        out = repo.pareto_out(session=s, job=repo.get_job(session=s, job_id=job_id))
    values = [(toy(p)["size"], toy(p)["distance"]) for _, p in first] + [
        (toy(p)["size"], toy(p)["distance"]) for p in (third_params, fourth_params)]
    mask = nondominated_mask(values, [True, False])
    assert out.n_completed == 4 and len(out.members) == int(mask.sum())
    assert math.isclose(out.hypervolume, hypervolume(values, out.reference_point, [True, False]))


def test_a_whole_front_given_is_stored_as_its_changes(sessions, spec_data: dict) -> None:
    with session_scope(sessions) as s:
        job_id = repo.create_job(session=s, spec=parse_spec(spec_data)).id
        ids = [r.id for r in repo.add_evaluations(session=s, job_id=job_id, points=[([0.1] * 6, {})] * 3)]
        for k, members in enumerate(([ids[0]], [ids[0], ids[1]], [ids[2]]), start=1):
            repo.add_snapshot(session=s, job_id=job_id, member_ids=members, hypervolume=float(k), n_completed=k)
        assert [[m.id for m in repo.front_members(session=s, job_id=job_id, n_completed=k)] for k in (1, 2, 3)] == [
            [ids[0]], [ids[0], ids[1]], [ids[2]]]
        assert repo.front_member_ids(session=s, job_id=job_id) == {ids[2]}
        assert s.scalar(select(func.count()).select_from(ParetoChange).where(ParetoChange.job_id == job_id)) == 5
