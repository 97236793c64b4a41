"""A job on a real two-node Ray cluster: the second node shares neither the server's working directory nor its
Python environment's mergefront, nor the folder of the job's own evaluator function. Before the cluster is up, the
job waits with the cause; the next runner runs it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.evaluators.ray_cluster import LocalCluster, bare_python

pytestmark = pytest.mark.slow


def test_job_runs_on_both_nodes_of_a_cluster_and_stores_which_node_ran_each(own_models: dict[str, Path],
                                                                           tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "cluster")
    homes = {name: tmp_path / f"{name}-home" for name in ("head-node", "second-node")}
    unreachable = _run_job(cluster, own_models, tmp_path)  # nothing listens at the cluster's address yet
    assert unreachable.returncode == 2 and "ended pending" in unreachable.stderr, unreachable.stderr[-3000:]
    assert f"waiting: cannot reach the Ray cluster at {cluster.address}" in unreachable.stderr
    assert _job(tmp_path) == ("pending", 0)
    try:
        cluster.start_node("head-node", cpus=1, env={"MERGEFRONT_HOME": str(homes["head-node"])})
        cluster.start_node("second-node", cpus=1, python=bare_python(tmp_path / "bare-env"),
                           env={"MERGEFRONT_HOME": str(homes["second-node"])})
        result = _run_job(cluster, own_models, tmp_path, "--resume", "1")  # the next runner
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    finally:
        cluster.stop()
    assert _job(tmp_path) == ("completed", 4)
    with sqlite3.connect(tmp_path / "server" / "home" / "mergefront.db") as db:
        rows = db.execute("SELECT state, node, node_id, metrics FROM evaluations ORDER BY number").fetchall()
    assert len(rows) == 4 and {state for state, *_ in rows} == {"completed"}, rows
    # one worker per node (one CPU each): both nodes ran evaluations, and each row names its node
    assert {node for _, node, _, _ in rows} == {"head-node", "second-node"}
    assert len({node_id for _, _, node_id, _ in rows}) == 2
    # each node imported the job's function from its own copy, put in its own cache
    for home in homes.values():
        assert len(list((home / "cache").glob("modules-*/cluster_objectives.py"))) == 1


def _job(tmp_path: Path) -> tuple[str, int]:
    with sqlite3.connect(tmp_path / "server" / "home" / "mergefront.db") as db:
        state = db.execute("SELECT state FROM jobs WHERE id = 1").fetchone()[0]
        return state, db.execute("SELECT count(*) FROM evaluations").fetchone()[0]


def _run_job(cluster: LocalCluster, own_models: dict[str, Path], tmp_path: Path,
             *resume: str) -> subprocess.CompletedProcess[str]:
    """`mergefront run` joined to the cluster from its own folder, with the job's module on its own path only."""
    modules = tmp_path / "server-modules"
    modules.mkdir(exist_ok=True)
    (modules / "cluster_objectives.py").write_text(
        "def norm(model, tokenizer, settings):\n"
        "    return float(model.lm_head.weight.norm())\n")
    spec = {
        "name": "two-nodes",
        "models": {"base": str(own_models["base"]),
                   "experts": [str(own_models["copy-expert"]), str(own_models["reverse-expert"])]},
        "merge": {"method": "task_arithmetic", "weight": {"low": 0.0, "high": 1.0}},
        "objectives": [{"name": "norm", "evaluator": "cluster_objectives:norm", "direction": "minimize"},
                       {"name": "storage_mb", "evaluator": "storage"}],
        "optimizer": {"name": "random", "budget": 4, "batch_size": 2, "seed": 0},
        "resources": {"workers": 2, "device": "cpu"},
    }
    server = tmp_path / "server"
    server.mkdir(exist_ok=True)
    (server / "job.yaml").write_text(yaml.safe_dump(spec))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")}, **cluster.client_env(),
           "PYTHONPATH": str(modules), "MERGEFRONT_HOME": str(server / "home")}
    env.pop("MERGEFRONT_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "mergefront.cli", "run", *(resume or ["job.yaml"])], cwd=server,
                          env=env, capture_output=True, text=True, timeout=900)
