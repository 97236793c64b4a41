"""The job page's reads (points, hypervolume history, job, first table page) of several checkouts of mergefront in
one run, e.g. before and after a change.

Each checkout (a git worktree of any version) builds a completed 4-objective job of N evaluations in its own SQLite
file with its own code and schema (tests/dashboard/synthetic.py, seed 0: the same job for every version since the
front was first stored as changes), unless that file exists, and serves it (`create_app`, uvicorn, tokens off on
loopback) in a process of its own. The calls then go round the servers, one endpoint at a time, so a change of
load on a shared machine hits every version alike. Prints each endpoint's median and range per version.

    git worktree add --detach /tmp/before 82d4b1a^
    .venv/bin/python benchmarks/dashboard_ab.py before=/tmp/before after=. [--n 10000] [--rounds 10]
        [--db-dir /tmp/dashboard-ab]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from mergefront.local_server import free_port, wait_until_serving

SERVE = r"""
import sys, tempfile
from pathlib import Path
root, db, port, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, root)
import mergefront
assert mergefront.__file__.startswith(root), mergefront.__file__
from mergefront.service.db import make_engine, make_session_factory, upgrade_database
from mergefront.service.settings import Settings
url = f"sqlite:///{db}"
if not db.exists():
    upgrade_database(url)
    from tests.dashboard.synthetic import build_job
    build_job(make_session_factory(make_engine(url)), n=n, n_objectives=4)
import uvicorn
from mergefront.service.app import create_app
settings = Settings(home=Path(tempfile.mkdtemp()), database_url=url, auth_disabled=True)
uvicorn.run(create_app(settings, run_jobs=False), host="127.0.0.1", port=port, log_level="warning")
"""

ENDPOINTS = {"points": "/v1/jobs/1/points", "hypervolume": "/v1/jobs/1/hypervolume", "job": "/v1/jobs/1",
             "table": "/v1/jobs/1/table?sort=number&offset=0&limit=25"}


def _start(root: Path, db: Path, n: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(root), str(db), str(port), str(n)], cwd=root,
                            env={**os.environ, "PYTHONPATH": str(root)}, stdout=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("versions", nargs="+", help="label=checkout folder, e.g. before=/tmp/before after=.")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--db-dir", type=Path, default=Path("/tmp/dashboard-ab"))
    args = parser.parse_args()
    args.db_dir.mkdir(parents=True, exist_ok=True)
    versions = dict(v.split("=", 1) for v in args.versions)
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        for label, root in versions.items():  # one at a time: building a job is heavy
            servers[label] = _start(Path(root).resolve(), args.db_dir / f"{label}-{args.n}.db", args.n)
            proc, base = servers[label]
            wait_until_serving(base, timeout=1800, process=proc, interval=0.5)
        times: dict[tuple[str, str], list[float]] = {(label, e): [] for label in versions for e in ENDPOINTS}
        with httpx.Client(timeout=120) as client:
            for r in range(args.rounds + 1):
                for name, path in ENDPOINTS.items():
                    for label in (list(versions) if r % 2 else list(versions)[::-1]):
                        start = time.perf_counter()
                        client.get(servers[label][1] + path).raise_for_status()
                        if r:  # the first round warms each server's caches
                            times[(label, name)].append(time.perf_counter() - start)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=30)
    print(f"{args.n} evaluations, 4 objectives, SQLite; {args.rounds} rounds; machine: {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    for name in ENDPOINTS:
        print(f"{name:12}" + "  ".join(
            f"{label} {statistics.median(t) * 1e3:6.0f} ms ({min(t) * 1e3:.0f}-{max(t) * 1e3:.0f})"
            for label in versions for t in [times[(label, name)]]))


if __name__ == "__main__":
    main()
