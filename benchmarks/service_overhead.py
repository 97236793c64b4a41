"""What the service costs per evaluation, beside Optuna's RDB storage: ask/tell with a free objective.

mergefront: a real `mergefront serve --no-runner` process (uvicorn, auth on, a write token made on its database),
driven over HTTP by one client: POST /v1/jobs/{id}/ask (one candidate), compute two objectives of its two merge
weights (free: a few arithmetic operations), POST /v1/evaluations/{id}/tell. The job uses random search (a Sobol
sequence), so the optimizer's own cost is as small as Optuna's RandomSampler's.
Optuna: `optuna.create_study(storage=RDBStorage(...))` on the same kind of database (a SQLite file, or a
PostgreSQL database on the same server), in this process: study.ask(), two suggest_float, study.tell() with the
same two objectives. Both use fresh databases; sizes run interleaved (mergefront n, Optuna n, next n).

Printed per database and size: evaluations per second of each, mergefront's ratio to Optuna, the cost per
evaluation (ms) over the whole run and over its last tenth, and how that last-tenth cost grew from the smallest
size. Results also go to benchmarks/results/service_overhead.json (a run of one database kind keeps the other's).

    .venv/bin/pip install 'optuna>=4.2'     # the `bench` extra
    .venv/bin/python benchmarks/service_overhead.py [--sizes 500,2000,10000,50000] [--db sqlite,postgresql]
        [--pg postgresql+psycopg://postgres@127.0.0.1:5432] [--pg-prefix mf_bench]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mergefront.service.db import make_engine, make_session_factory, session_scope, upgrade_database  # noqa: E402
from mergefront.service.models import TokenScope  # noqa: E402
from mergefront.service.tokens import create_token  # noqa: E402

OBJECTIVES = ("size", "distance")


def objectives(a: float, b: float) -> tuple[float, float]:
    """Two conflicting objectives of two weights: their sum (maximised), the distance to (0.2, 0.9) (minimised)."""
    return a + b, math.hypot(a - 0.2, b - 0.9)


def spec(n: int) -> dict:
    return {
        "name": f"overhead-{n}",
        "models": {"base": "bench://digits/base", "experts": ["bench://digits/rotated", "bench://digits/inverted"]},
        "merge": {"method": "task_arithmetic", "weight": {"low": 0.0, "high": 1.0}},
        "objectives": [{"evaluator": "external", "name": "size", "direction": "maximize"},
                       {"evaluator": "external", "name": "distance", "direction": "minimize"}],
        "optimizer": {"name": "random", "budget": n, "batch_size": 1, "seed": 0},
        "resources": {"ask_timeout": 86400.0},
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def mergefront_server(url: str, home: Path) -> Iterator[tuple[str, str]]:
    """A `mergefront serve` process on `url`'s database; yields (its address, a write token)."""
    upgrade_database(url)
    engine = make_engine(url)
    with session_scope(make_session_factory(engine)) as s:
        token = create_token(session=s, name="overhead benchmark", scope=TokenScope.write).token
    engine.dispose()
    port = _free_port()
    env = {**os.environ, "MERGEFRONT_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "mergefront.cli", "serve", "--no-runner", "--port", str(port),
                             "--db", url], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{address}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
        yield address, token
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run_mergefront(address: str, token: str, n: int) -> list[float]:
    """Ask and tell `n` evaluations one at a time; the time after each."""
    with httpx.Client(base_url=address, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        job = client.post("/v1/jobs", json=spec(n))
        job.raise_for_status()
        job_id = job.json()["id"]
        stamps, start = [], time.perf_counter()
        for _ in range(n):
            asked = client.post(f"/v1/jobs/{job_id}/ask", json={"n": 1})
            asked.raise_for_status()
            (candidate,) = asked.json()
            p = candidate["params"]
            size, distance = objectives(p["weight.rotated"], p["weight.inverted"])
            told = client.post(f"/v1/evaluations/{candidate['id']}/tell",
                               json={"metrics": {"size": size, "distance": distance}})
            told.raise_for_status()
            stamps.append(time.perf_counter() - start)
        state = client.get(f"/v1/jobs/{job_id}").json()
        if state["state"] != "completed" or state["n_completed"] != n:
            raise RuntimeError(f"mergefront job {job_id} ended {state['state']} with {state['n_completed']} of {n}")
    return stamps


def run_optuna(url: str, n: int) -> list[float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(storage=storage, study_name=f"overhead-{n}", directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    stamps, start = [], time.perf_counter()
    for _ in range(n):
        trial = study.ask()
        a, b = trial.suggest_float("rotated", 0.0, 1.0), trial.suggest_float("inverted", 0.0, 1.0)
        study.tell(trial, list(objectives(a, b)))
        stamps.append(time.perf_counter() - start)
    if len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))) != n:
        raise RuntimeError("optuna study is short of trials")
    storage.engine.dispose()  # type: ignore[attr-defined]
    return stamps


def summary(stamps: list[float]) -> dict[str, float]:
    n = len(stamps)
    tail = max(1, n // 10)
    last = (stamps[-1] - stamps[-tail - 1]) / tail if n > tail else stamps[-1] / n
    return {"n": n, "seconds": stamps[-1], "per_second": n / stamps[-1], "ms_mean": 1000 * stamps[-1] / n,
            "ms_last_tenth": 1000 * last}


@contextmanager
def databases(kind: str, pg: str, prefix: str, tmp: Path) -> Iterator[Callable[[str], str]]:
    """A factory of fresh database URLs of one kind (dropped afterwards)."""
    made: list[str] = []

    def fresh(name: str) -> str:
        if kind == "sqlite":
            return f"sqlite:///{tmp / (name + '.db')}"
        db = f"{prefix}_{name}_{os.getpid()}"
        admin = sa.create_engine(f"{pg}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}"'))
            conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
        admin.dispose()
        made.append(db)
        return f"{pg}/{db}"

    try:
        yield fresh
    finally:
        if made:
            admin = sa.create_engine(f"{pg}/postgres", isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                for db in made:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
            admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="500,2000,10000,50000", help="evaluations per run, comma-separated")
    parser.add_argument("--db", default="sqlite,postgresql", help="database kinds: sqlite, postgresql")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432",
                        help="a PostgreSQL server (URL without a database) where databases may be created")
    parser.add_argument("--pg-prefix", default="mf_bench", help="name prefix of the databases made and dropped")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "service_overhead.json")
    args = parser.parse_args()
    sizes = [int(v) for v in args.sizes.split(",")]
    results: dict[str, list[dict]] = {}
    print(f"ask/tell with a free objective, 2 objectives, 2 parameters; sizes {sizes}", flush=True)
    with tempfile.TemporaryDirectory(prefix="mf-overhead-") as tmp:
        for kind in args.db.split(","):
            with databases(kind, args.pg, args.pg_prefix, Path(tmp)) as fresh, \
                    mergefront_server(fresh("mergefront"), Path(tmp) / "home") as (address, token):
                rows = results.setdefault(kind, [])
                for n in sizes:
                    mf = summary(run_mergefront(address, token, n))
                    print(f"{kind:10} n={n:6d}  mergefront {mf['per_second']:7.1f}/s ({mf['ms_mean']:.2f} ms mean, "
                          f"{mf['ms_last_tenth']:.2f} ms last tenth); Optuna next", flush=True)
                    op = summary(run_optuna(fresh(f"optuna{n}"), n))
                    rows.append({"n": n, "mergefront": mf, "optuna": op, "ratio": mf["per_second"] / op["per_second"]})
                    print(_line(kind, rows, n), flush=True)
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} at the end of the run")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    kept = json.loads(args.out.read_text()) if args.out.exists() else {}  # runs of other databases stay
    kept.update({kind: {"command": " ".join(sys.argv), "load_average": load, "sizes": rows}
                 for kind, rows in results.items()})
    args.out.write_text(json.dumps(kept, indent=2) + "\n")
    print(f"written to {args.out}")


def _line(kind: str, rows: list[dict], n: int) -> str:
    row = rows[-1]
    mf, op = row["mergefront"], row["optuna"]
    first = rows[0]
    grow_mf = mf["ms_last_tenth"] / first["mergefront"]["ms_last_tenth"]
    grow_op = op["ms_last_tenth"] / first["optuna"]["ms_last_tenth"]
    return (f"{kind:10} n={n:6d}  mergefront {mf['per_second']:7.1f}/s ({mf['ms_mean']:.2f} ms mean, "
            f"{mf['ms_last_tenth']:.2f} ms last tenth, x{grow_mf:.2f} vs n={first['n']})  "
            f"optuna {op['per_second']:7.1f}/s ({op['ms_mean']:.2f} ms, {op['ms_last_tenth']:.2f} ms last tenth, "
            f"x{grow_op:.2f})  ratio {row['ratio']:.2f}x")


if __name__ == "__main__":
    main()
