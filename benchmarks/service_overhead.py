"""What the service costs per evaluation, beside Optuna's RDB storage: ask/tell with a free objective.

mergefront: a real `mergefront serve --no-runner` process (uvicorn, auth on, a write token made on its database),
driven over HTTP by one client: POST /v1/jobs/{id}/ask (one candidate), compute two objectives of its two merge
weights (free: a few arithmetic operations), POST /v1/evaluations/{id}/tell. The job uses random search (a Sobol
sequence), so the optimizer's own cost is as small as Optuna's RandomSampler's.
Optuna: `optuna.create_study(storage=RDBStorage(...))` on the same kind of database (a SQLite file, or a
PostgreSQL database on the same server), in this process: study.ask(), two suggest_float, study.tell() with the
same two objectives. Both use fresh databases.

Two modes:
- `--mode growing` (the default): ONE mergefront job and ONE Optuna study grow to the largest size, interleaved in
  blocks (`--block` of mergefront's ask/tells, then as many Optuna trials, and again), so a change of load on a
  shared machine hits both alike. Each side's clock runs only during its own blocks. At every size n it reports
  throughput over the first n evaluations and the cost per evaluation over the last tenth before n. Partial
  results are written every few blocks, so a stopped run leaves its figures. With `--stop-after S`, Optuna's
  blocks stop (once it has `--optuna-min` trials) when mergefront's remaining evaluations, at its recent pace,
  would not fit in S seconds otherwise;
  a size Optuna did not reach gets an upper bound on its throughput (its time so far plus the remaining trials
  at its cheapest block's cost per trial).
- `--mode separate`: a fresh job and study per size, sizes interleaved (mergefront n, Optuna n, next n).

Per block (growing mode) the results also hold the CPU time of the mergefront server, of this process (the HTTP
client, or Optuna itself), and, on PostgreSQL, of each side's database backends: where an evaluation's time goes.
Printed per database and size: evaluations per second of each, mergefront's ratio to Optuna, the cost per
evaluation (ms) over the whole run and over its last tenth, and how that last-tenth cost grew from the smallest
size. Results go to benchmarks/results/service_overhead.json (a run of one database kind keeps the other's).

    .venv/bin/pip install 'optuna>=4.2'     # the `bench` extra
    .venv/bin/python benchmarks/service_overhead.py [--sizes 500,2000,10000,50000] [--db sqlite,postgresql]
        [--mode growing|separate] [--block 100] [--stop-after SECONDS] [--optuna-min 10000]
        [--pg postgresql+psycopg://postgres@127.0.0.1:5432] [--pg-prefix mf_bench]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mergefront.local_server import free_port, wait_until_serving  # noqa: E402
from mergefront.service.db import make_engine, make_session_factory, session_scope, upgrade_database  # noqa: E402
from mergefront.service.models import TokenScope  # noqa: E402
from mergefront.service.tokens import create_token  # noqa: E402

OBJECTIVES = ("size", "distance")
TICK = os.sysconf("SC_CLK_TCK")


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


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (those gone count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / TICK


@contextmanager
def mergefront_server(url: str, home: Path, max_budget: int) -> Iterator[tuple[str, str, int]]:
    """A `mergefront serve` process on `url`'s database that takes jobs of up to `max_budget` evaluations (its
    default limit for network jobs is 10,000); yields (its address, a write token, its pid)."""
    upgrade_database(url)
    engine = make_engine(url)
    with session_scope(make_session_factory(engine)) as s:
        token = create_token(session=s, name="overhead benchmark", scope=TokenScope.write).token
    engine.dispose()
    port = free_port()
    env = {**os.environ, "MERGEFRONT_HOME": str(home), "MERGEFRONT_MAX_BUDGET": str(max(max_budget, 10_000))}
    proc = subprocess.Popen([sys.executable, "-m", "mergefront.cli", "serve", "--no-runner", "--port", str(port),
                             "--db", url], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    address = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(address, timeout=120, process=proc)
        yield address, token, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class MergefrontJob:
    """One ask/tell job over HTTP, advanced `k` evaluations at a time."""

    def __init__(self, address: str, token: str, budget: int) -> None:
        self.client = httpx.Client(base_url=address, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        job = self.client.post("/v1/jobs", json=spec(budget))
        job.raise_for_status()
        self.job_id, self.budget, self.done = job.json()["id"], budget, 0

    def step(self, k: int) -> list[float]:
        """Ask and tell `k` evaluations one at a time; the seconds each took."""
        times = []
        for _ in range(k):
            start = time.perf_counter()
            asked = self.client.post(f"/v1/jobs/{self.job_id}/ask", json={"n": 1})
            asked.raise_for_status()
            (candidate,) = asked.json()
            p = candidate["params"]
            size, distance = objectives(p["weight.rotated"], p["weight.inverted"])
            told = self.client.post(f"/v1/evaluations/{candidate['id']}/tell",
                                    json={"metrics": {"size": size, "distance": distance}})
            told.raise_for_status()
            times.append(time.perf_counter() - start)
        self.done += k
        return times

    def close(self) -> None:
        state = self.client.get(f"/v1/jobs/{self.job_id}").json()
        self.client.close()
        if state["n_completed"] != self.done or (self.done == self.budget and state["state"] != "completed"):
            raise RuntimeError(f"mergefront job {self.job_id} is {state['state']} with {state['n_completed']} "
                               f"evaluations of the {self.done} told")


class OptunaStudy:
    """One Optuna study on RDBStorage, advanced `k` trials at a time."""

    def __init__(self, url: str, name: str) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.storage = optuna.storages.RDBStorage(url)
        self.study = optuna.create_study(storage=self.storage, study_name=name, directions=["maximize", "minimize"],
                                         sampler=optuna.samplers.RandomSampler(seed=0))
        self.done = 0

    def step(self, k: int) -> list[float]:
        times = []
        for _ in range(k):
            start = time.perf_counter()
            trial = self.study.ask()
            a, b = trial.suggest_float("rotated", 0.0, 1.0), trial.suggest_float("inverted", 0.0, 1.0)
            self.study.tell(trial, list(objectives(a, b)))
            times.append(time.perf_counter() - start)
        self.done += k
        return times

    def close(self) -> None:
        import optuna

        done = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        self.storage.engine.dispose()  # type: ignore[attr-defined]
        if len(done) != self.done:
            raise RuntimeError(f"the Optuna study has {len(done)} complete trials of {self.done}")


def summary(times: list[float], n: int | None = None) -> dict[str, float]:
    """Throughput over the first `n` evaluations (all by default) and their cost per evaluation, whole and last
    tenth."""
    n = len(times) if n is None else n
    tail = max(1, n // 10)
    total, last = sum(times[:n]), sum(times[n - tail:n])
    return {"n": n, "seconds": total, "per_second": n / total, "ms_mean": 1000 * total / n,
            "ms_last_tenth": 1000 * last / tail}


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


class Backends:
    """The PostgreSQL server processes serving one database (none for SQLite), for their CPU time."""

    def __init__(self, pg: str, url: str) -> None:
        self.database = url.rsplit("/", 1)[1] if url.startswith("postgresql") else None
        self.admin = sa.create_engine(f"{pg}/postgres", isolation_level="AUTOCOMMIT") if self.database else None

    def pids(self) -> list[int]:
        if self.admin is None:
            return []
        with self.admin.connect() as conn:
            return [int(p) for (p,) in conn.execute(sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :d"),
                                                    {"d": self.database})]

    def close(self) -> None:
        if self.admin is not None:
            self.admin.dispose()


def run_growing(kind: str, fresh: Callable[[str], str], tmp: Path, args: argparse.Namespace,
                save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """One job and one study grown to the largest size in alternating blocks; the figures at each size."""
    sizes, block, began = args.sizes, args.block, time.monotonic()
    record: dict[str, Any] = {"mode": "growing", "command": " ".join(sys.argv), "block": block,
                              "started": datetime.now(UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
                              "sizes": [], "blocks": [], "optuna_stopped_at": None, "finished": False,
                              "optuna_version": _optuna_version()}
    mf_url, op_url = fresh("mergefront"), fresh("optuna")
    with mergefront_server(mf_url, tmp / "home", sizes[-1]) as (address, token, server_pid):
        mf, op = MergefrontJob(address, token, sizes[-1]), OptunaStudy(op_url, "overhead")
        mf_db, op_db = Backends(args.pg, mf_url), Backends(args.pg, op_url)
        mf_times: list[float] = []
        op_times: list[float] = []
        try:
            while mf.done < sizes[-1]:
                k = min(block, sizes[-1] - mf.done)
                row: dict[str, Any] = {"n": mf.done + k}
                row["mergefront"] = _timed_block(mf, k, [server_pid], mf_db, mf_times)
                if record["optuna_stopped_at"] is None and (op.done < args.optuna_min or _optuna_fits(
                        args.stop_after, began, mf_times, op_times, k, sizes[-1])):
                    row["optuna"] = _timed_block(op, k, [], op_db, op_times)
                elif record["optuna_stopped_at"] is None:
                    record["optuna_stopped_at"] = op.done
                    print(f"{kind:10} Optuna stops at {op.done} trials: mergefront's remaining evaluations need the "
                          f"rest of --stop-after {args.stop_after:g} s", flush=True)
                row["load_average"] = os.getloadavg()[0]
                record["blocks"].append(row)
                for n in sizes:
                    if mf.done - k < n <= mf.done:
                        record["sizes"].append(_size_row(n, mf_times, op_times))
                        print(_line(kind, record["sizes"]), flush=True)
                        save(record)
                if len(record["blocks"]) % 10 == 0:
                    save(record)
            mf.close()
            op.close()
            record["finished"] = True
        finally:
            record["elapsed_s"] = time.monotonic() - began
            mf_db.close()
            op_db.close()
            save(record)
    return record


def _timed_block(side: MergefrontJob | OptunaStudy, k: int, pids: list[int], db: Backends,
                 times: list[float]) -> dict[str, float]:
    """Run one block of `k`; its ms per evaluation of wall time and of CPU time (server, this process, database)."""
    db_pids = db.pids()
    server, client, backend = cpu_seconds(pids), time.process_time(), cpu_seconds(db_pids)
    block = side.step(k)
    server, client = cpu_seconds(pids) - server, time.process_time() - client
    backend = cpu_seconds(db_pids) - backend
    times.extend(block)
    return {"ms": 1000 * sum(block) / k, "server_cpu_ms": 1000 * server / k, "client_cpu_ms": 1000 * client / k,
            "db_cpu_ms": 1000 * backend / k}


def _optuna_fits(stop_after: float, began: float, mf_times: list[float], op_times: list[float], k: int,
                 largest: int) -> bool:
    """Whether Optuna's next block (at its last block's pace) still leaves mergefront time for its remaining
    evaluations (at its pace over the last 1,000, plus a fifth) within `stop_after` seconds; always without a limit."""
    if not stop_after or not op_times:
        return True
    recent = mf_times[-1000:]
    remaining = (largest - len(mf_times)) * 1.2 * sum(recent) / len(recent)
    next_block = k * sum(op_times[-k:]) / len(op_times[-k:])
    return time.monotonic() - began + next_block + remaining < stop_after


def _size_row(n: int, mf_times: list[float], op_times: list[float]) -> dict[str, Any]:
    mf = summary(mf_times, n)
    row: dict[str, Any] = {"n": n, "mergefront": mf, "optuna": None, "ratio": None,
                           "load_average": os.getloadavg()[0]}
    if len(op_times) >= n:
        row["optuna"] = summary(op_times, n)
        row["ratio"] = mf["per_second"] / row["optuna"]["per_second"]
    elif op_times:
        # an upper bound on Optuna's throughput over n: its time so far, the rest at its cheapest block's pace
        cheapest = min(sum(op_times[i:i + 100]) / len(op_times[i:i + 100]) for i in range(0, len(op_times), 100))
        bound = n / (sum(op_times) + (n - len(op_times)) * cheapest)
        row["optuna_reached"] = len(op_times)
        row["optuna_per_second_at_most"] = bound
        row["ratio_at_least"] = mf["per_second"] / bound
    return row


def run_separate(kind: str, fresh: Callable[[str], str], tmp: Path, args: argparse.Namespace,
                 save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """A fresh job and study per size, interleaved size by size."""
    record: dict[str, Any] = {"mode": "separate", "command": " ".join(sys.argv), "sizes": [],
                              "started": datetime.now(UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count()}
    with mergefront_server(fresh("mergefront"), tmp / "home", args.sizes[-1]) as (address, token, _):
        for n in args.sizes:
            job = MergefrontJob(address, token, n)
            mf = summary(job.step(n))
            job.close()
            print(f"{kind:10} n={n:6d}  mergefront {mf['per_second']:7.1f}/s ({mf['ms_mean']:.2f} ms mean, "
                  f"{mf['ms_last_tenth']:.2f} ms last tenth); Optuna next", flush=True)
            study = OptunaStudy(fresh(f"optuna{n}"), f"overhead-{n}")
            op = summary(study.step(n))
            study.close()
            ratio = mf["per_second"] / op["per_second"]
            record["sizes"].append({"n": n, "mergefront": mf, "optuna": op, "ratio": ratio,
                                    "load_average": os.getloadavg()[0]})
            print(_line(kind, record["sizes"]), flush=True)
            save(record)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="500,2000,10000,50000", help="evaluations, comma-separated, ascending")
    parser.add_argument("--db", default="sqlite,postgresql", help="database kinds: sqlite, postgresql")
    parser.add_argument("--mode", choices=("growing", "separate"), default="growing")
    parser.add_argument("--block", type=int, default=100, help="growing mode: evaluations per alternating block")
    parser.add_argument("--stop-after", type=float, default=0.0,
                        help="growing mode: seconds by which mergefront must reach the largest size; Optuna's blocks "
                             "stop when they would not leave it the time (0: no limit)")
    parser.add_argument("--optuna-min", type=int, default=10_000,
                        help="growing mode: Optuna's blocks do not stop before this many trials")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432",
                        help="a PostgreSQL server (URL without a database) where databases may be created")
    parser.add_argument("--pg-prefix", default="mf_bench", help="name prefix of the databases made and dropped")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "service_overhead.json")
    args = parser.parse_args()
    args.sizes = sorted(int(v) for v in args.sizes.split(","))
    if args.block < 1 or args.sizes[0] < 10:
        parser.error("--block must be at least 1 and every size at least 10")
    signal.signal(signal.SIGTERM, _stop)  # `timeout` stops the run: the finally clauses still save and clean up
    kept = json.loads(args.out.read_text()) if args.out.exists() else {}  # runs of other databases stay
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(f"ask/tell with a free objective, 2 objectives, 2 parameters; sizes {args.sizes}, {args.mode} mode"
          + (f", blocks of {args.block}" if args.mode == "growing" else ""), flush=True)
    with tempfile.TemporaryDirectory(prefix="mf-overhead-") as tmp:
        for kind in args.db.split(","):
            def save(record: dict[str, Any], kind: str = kind) -> None:
                kept[kind] = record
                args.out.write_text(json.dumps(kept, indent=1) + "\n")

            run = run_growing if args.mode == "growing" else run_separate
            with databases(kind, args.pg, args.pg_prefix, Path(tmp)) as fresh:
                run(kind, fresh, Path(tmp), args, save)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end of the run")
    print(f"written to {args.out}")


def _optuna_version() -> str:
    import optuna

    return str(optuna.__version__)


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}; the figures so far are saved")


def _line(kind: str, rows: list[dict]) -> str:
    row, first = rows[-1], rows[0]
    mf, op = row["mergefront"], row["optuna"]
    grow_mf = mf["ms_last_tenth"] / first["mergefront"]["ms_last_tenth"]
    text = (f"{kind:10} n={row['n']:6d}  mergefront {mf['per_second']:7.1f}/s ({mf['ms_mean']:.2f} ms mean, "
            f"{mf['ms_last_tenth']:.2f} ms last tenth, x{grow_mf:.2f} vs n={first['n']})  ")
    if op is not None and first["optuna"] is not None:
        grow = op["ms_last_tenth"] / first["optuna"]["ms_last_tenth"]
        return text + (f"optuna {op['per_second']:7.1f}/s ({op['ms_mean']:.2f} ms, {op['ms_last_tenth']:.2f} ms last "
                       f"tenth, x{grow:.2f})  ratio {row['ratio']:.2f}x")
    if "optuna_per_second_at_most" in row:
        return text + (f"optuna reached {row['optuna_reached']} trials: at most "
                       f"{row['optuna_per_second_at_most']:.1f}/s over {row['n']}  ratio at least "
                       f"{row['ratio_at_least']:.2f}x")
    return text + "optuna: no trials"


if __name__ == "__main__":
    main()
