"""The `mergefront` command: run a search locally, serve the API, or talk to a server.

Commands that read or manage stored jobs (jobs, front, evaluations, export, cancel, delete, rename, notes) work
on a server (--url, or $MERGEFRONT_URL) or, by default, on the local database that `run` and `serve` use.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from mergefront import __version__
from mergefront.cli_admin import add_commands, add_server_options
from mergefront.cli_jobs import add_job_commands
from mergefront.errors import MergefrontError
from mergefront.interrupts import interrupt
from mergefront.report import format_front


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv); return the exit status."""
    args = _parser().parse_args(argv)
    try:
        with _stops_on_signals(whole_process=argv is None):
            return int(args.func(args) or 0)
    except MergefrontError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file the user named: not there, not writable, ...
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; a stored job resumes with `mergefront serve` or `mergefront run --resume JOB`",
              file=sys.stderr)
        return 130


@contextmanager
def _stops_on_signals(whole_process: bool) -> Iterator[None]:
    """SIGTERM stops a command as Ctrl-C does (its job released), and neither lands inside a database transaction
    (mergefront.interrupts); when the command is the whole process (not a call from Python), Ray and every process
    it started stop with it, Ray's agents included. `serve` leaves both signals to uvicorn, which stops the same
    way."""
    if not whole_process or threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        if "ray" in sys.modules:
            from mergefront.evaluators.pool import shutdown_ray

            shutdown_ray()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mergefront", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mergefront {__version__}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a search locally, without a server, and print its front")
    run.add_argument("spec", nargs="?", help="job spec (YAML or JSON); relative paths in it are relative to it")
    run.add_argument("--resume", type=int, metavar="JOB", help="continue a stored job instead")
    run.add_argument("--db", metavar="URL", help="SQLAlchemy URL (default: MERGEFRONT_DATABASE_URL or ~/.mergefront)")
    run.set_defaults(func=_run)

    serve = sub.add_parser("serve", help="start the REST API, the dashboard and the job runner")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s; 0.0.0.0 "
                       "for every interface)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    serve.add_argument("--db", metavar="URL", help="SQLAlchemy URL (default: MERGEFRONT_DATABASE_URL or ~/.mergefront)")
    serve.add_argument("--no-runner", action="store_true", help="serve the API only; run no jobs here")
    serve.add_argument("--no-auth", action="store_true", help="answer without tokens (only on a loopback "
                       "address, only to clients on this machine; logged)")
    serve.set_defaults(func=_serve)

    migrate = sub.add_parser("migrate", help="bring the database's schema up to date (once, before API replicas "
                             "start; `serve` and `run` also do it)")
    migrate.add_argument("--db", metavar="URL", help="SQLAlchemy URL (default: MERGEFRONT_DATABASE_URL or "
                         "~/.mergefront)")
    migrate.set_defaults(func=_migrate)

    space = sub.add_parser("space", help="show a spec's memory plan per worker and the search space it defines")
    space.add_argument("spec", help="job spec (YAML or JSON)")
    space.set_defaults(func=_space)

    submit = sub.add_parser("submit", help="submit a spec to a server")
    submit.add_argument("spec", help="job spec (YAML or JSON); relative paths in it are relative to it, as for run")
    add_server_options(submit)
    submit.add_argument("--wait", action="store_true", help="wait with a progress bar and print the front")
    submit.set_defaults(func=_submit)

    add_job_commands(sub)
    add_commands(sub)
    return parser


def _run(args: argparse.Namespace) -> int:
    from mergefront.service import repository as repo
    from mergefront.service.db import session_scope
    from mergefront.service.runner import JobRunner
    from mergefront.service.space import describe_space, job_files, job_memory, job_space
    from mergefront.spec import load_spec

    if (args.spec is None) == (args.resume is None):
        raise MergefrontError("give a spec file or --resume JOB (one of them)")
    settings, sessions = _local_database(args.db)
    with session_scope(sessions) as s:
        if args.resume is None:
            spec = load_spec(args.spec)
            _refuse_external(spec.external, str(args.spec))
            files = job_files(spec, settings)
            print(job_memory(spec, files).describe())
            job_id = repo.create_job(session=s, spec=spec).id
            print(describe_space(spec, job_space(spec, settings, files)))
        else:
            job = repo.get_job(session=s, job_id=args.resume)
            _refuse_external(job.external, f"job {job.id}")
            job_id = job.id
        job = repo.get_job(session=s, job_id=job_id)
        budget, ref = job.budget, job.reference_point
    fixed = "" if None not in ref else "; null entries are fixed after the first batch"
    print(f"job {job_id} stored in {settings.resolved_database_url}; hypervolume against reference point {ref}"
          f"{fixed}", flush=True)
    with _ProgressBar(job_id, budget) as show:
        state = JobRunner(session_factory=sessions, settings=settings).run(job_id, progress=show)
    with session_scope(sessions) as s:
        job = repo.get_job(session=s, job_id=job_id)
        print(format_front(repo.pareto_out(session=s, job=job)))
        if state == "running":  # this runner was paused past its lease: another one holds the job now
            raise MergefrontError(f"job {job_id} continues on another runner, which took it over when this one "
                                  "stopped renewing its lease")
        if state != "completed":
            raise MergefrontError(f"job {job_id} ended {state}" + (f": {job.error}" if job.error else ""))
    return 0


class _ProgressBar:
    """A tqdm bar that starts with the first report of the runner: after Ray and the workers are up, so its rate
    and ETA count evaluations only."""

    def __init__(self, job_id: int, budget: int) -> None:
        self.job_id, self.budget = job_id, budget
        self.bar: Any = None

    def __enter__(self) -> _ProgressBar:
        return self

    def __call__(self, p: object) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=self.budget, initial=getattr(p, "n_finished", 0), desc=f"job {self.job_id}",
                            unit="eval")
        self.bar.n = getattr(p, "n_finished", 0)
        self.bar.set_postfix(hv=f"{getattr(p, 'hypervolume', None) or 0:.4g}", front=getattr(p, "front_size", 0))
        self.bar.refresh()

    def __exit__(self, *_exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def _local_database(db: str | None):  # type: ignore[no-untyped-def]
    """Settings for `db` (default: the environment's) and a session factory on its migrated database."""
    from mergefront.service.db import make_engine, make_session_factory, upgrade_database
    from mergefront.service.settings import Settings

    settings = Settings(database_url=db) if db else Settings()
    upgrade_database(settings.resolved_database_url)
    return settings, make_session_factory(make_engine(settings.resolved_database_url,
                                                      idle_seconds=settings.db_idle_seconds))


def _refuse_external(external: bool, what: str) -> None:
    if external:
        raise MergefrontError(f"{what} has external objectives: you evaluate its candidates, so `run` starts no "
                              "workers for it. Submit it to a server (`mergefront submit SPEC`) and drive it with "
                              "the SDK (job.ask(), job.tell(candidate, metrics)) or REST (POST /v1/jobs/ID/ask, "
                              "POST /v1/evaluations/ID/tell)")


def _migrate(args: argparse.Namespace) -> int:
    _local_database(args.db)
    print("database schema up to date")
    return 0


def _space(args: argparse.Namespace) -> int:
    from mergefront.service.settings import Settings
    from mergefront.service.space import describe_space, job_files, job_memory, job_space
    from mergefront.spec import load_spec

    spec, settings = load_spec(args.spec), Settings()
    files = job_files(spec, settings)
    print(job_memory(spec, files).describe())
    print(describe_space(spec, job_space(spec, settings, files)))
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mergefront.service.app import create_app
    from mergefront.service.auth import check_auth_setting
    from mergefront.service.settings import LOOPBACK_HOSTS, Settings
    from mergefront.service.token_files import read_token_files

    overrides: dict[str, object] = {"database_url": args.db} if args.db else {}
    if args.no_auth:
        overrides["auth_disabled"] = True
    settings = Settings(**overrides)  # type: ignore[arg-type]
    check_auth_setting(settings, args.host)
    read_token_files(settings.token_files)  # a bad entry or file stops the server here, said in words
    if settings.allowed_hosts == list(LOOPBACK_HOSTS) and args.host not in LOOPBACK_HOSTS:
        print(f"note: requests are answered only with a Host header in {settings.allowed_hosts}; set "
              "MERGEFRONT_ALLOWED_HOSTS to the names clients use for this machine", file=sys.stderr)
    app = create_app(settings, run_jobs=not args.no_runner and settings.run_jobs)
    print(f"mergefront API on http://{args.host}:{args.port} (dashboard at /, docs at /docs), "
          f"database {settings.resolved_database_url}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def _submit(args: argparse.Namespace) -> int:
    from mergefront.client import Client

    with Client(args.url, token=args.token) as client:
        job = client.submit(args.spec)
        print(f"submitted job {job.id} to {client.url}")
        print(job.space_description())
        if args.wait:
            info = job.wait()
            print(format_front(job.pareto()))
            if info.state != "completed":
                raise MergefrontError(f"job {job.id} ended {info.state}" + (f": {info.error}" if info.error else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
