"""The `mergefront` command: run a search locally, serve the API, or talk to a server."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mergefront.cli_admin import add_commands, add_server_options
from mergefront.errors import MergefrontError
from mergefront.report import format_front


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MergefrontError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; a stored job resumes with `mergefront serve` or `mergefront run --resume JOB`",
              file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mergefront", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a search locally, without a server, and print its front")
    run.add_argument("spec", nargs="?", help="job spec (YAML or JSON)")
    run.add_argument("--resume", type=int, metavar="JOB", help="continue a stored job instead")
    run.add_argument("--db", help="SQLAlchemy URL (default: MERGEFRONT_DATABASE_URL or ~/.mergefront)")
    run.set_defaults(func=_run)

    serve = sub.add_parser("serve", help="start the REST API (and the job runner)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--db", help="SQLAlchemy URL")
    serve.add_argument("--no-runner", action="store_true", help="serve the API only; run no jobs here")
    serve.add_argument("--no-auth", action="store_true", help="answer without tokens (only on a loopback "
                       "address, only to clients on this machine; logged)")
    serve.set_defaults(func=_serve)

    migrate = sub.add_parser("migrate", help="bring the database's schema up to date (once, before API replicas "
                             "start; `serve` and `run` also do it)")
    migrate.add_argument("--db", help="SQLAlchemy URL (default: MERGEFRONT_DATABASE_URL or ~/.mergefront)")
    migrate.set_defaults(func=_migrate)

    space = sub.add_parser("space", help="show the search space a spec defines (its dimension and meaning)")
    space.add_argument("spec")
    space.set_defaults(func=_space)

    submit = sub.add_parser("submit", help="submit a spec to a server")
    submit.add_argument("spec")
    add_server_options(submit)
    submit.add_argument("--wait", action="store_true", help="wait with a progress bar and print the front")
    submit.set_defaults(func=_submit)

    export = sub.add_parser("export", help="export an evaluation as a mergekit YAML and/or a checkpoint directory")
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("evaluation", type=int, nargs="?", help="evaluation id")
    which.add_argument("--job", type=int, help="with --best: pick from this job's front")
    export.add_argument("--best", metavar="OBJECTIVE", help="the front member best at this objective")
    export.add_argument("--mergekit", metavar="FILE", help="write the mergekit YAML here ('-': print it)")
    export.add_argument("--checkpoint", metavar="DIR", help="materialise the merged model in this directory")
    export.add_argument("--db", help="SQLAlchemy URL (default: MERGEFRONT_DATABASE_URL or ~/.mergefront)")
    export.set_defaults(func=_export)

    front = sub.add_parser("front", help="print a job's Pareto front from a server")
    front.add_argument("job", type=int)
    add_server_options(front)
    front.set_defaults(func=_front)
    add_commands(sub)
    return parser


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mergefront.service import repository as repo
    from mergefront.service.db import make_engine, make_session_factory, session_scope, upgrade_database
    from mergefront.service.runner import JobRunner, Progress
    from mergefront.service.settings import Settings
    from mergefront.service.space import describe_space, job_space
    from mergefront.spec import load_spec

    if (args.spec is None) == (args.resume is None):
        raise MergefrontError("give a spec file or --resume JOB (one of them)")
    settings = Settings(database_url=args.db) if args.db else Settings()
    url = settings.resolved_database_url
    upgrade_database(url)
    sessions = make_session_factory(make_engine(url))
    with session_scope(sessions) as s:
        if args.resume is None:
            spec = load_spec(args.spec)
            _refuse_external(spec.external, str(args.spec))
            job_id = repo.create_job(session=s, spec=spec).id
            print(describe_space(spec, job_space(spec, settings)))
        else:
            job = repo.get_job(session=s, job_id=args.resume)
            _refuse_external(job.external, f"job {job.id}")
            job_id = job.id
        job = repo.get_job(session=s, job_id=job_id)
        budget, ref = job.budget, job.reference_point
    fixed = "" if None not in ref else "; null entries are fixed after the first batch"
    print(f"job {job_id} stored in {url}; hypervolume against reference point {ref}{fixed}")
    with tqdm(total=budget, desc=f"job {job_id}", unit="eval") as bar:
        def show(p: Progress) -> None:
            bar.n = p.n_finished
            bar.set_postfix(hv=f"{p.hypervolume or 0:.4g}", front=p.front_size)
            bar.refresh()

        state = JobRunner(session_factory=sessions, settings=settings).run(job_id, progress=show)
    with session_scope(sessions) as s:
        job = repo.get_job(session=s, job_id=job_id)
        print(format_front(repo.pareto_out(session=s, job=job)))
        if state != "completed":
            raise MergefrontError(f"job {job_id} ended {state}: {job.error}")
    return 0


def _refuse_external(external: bool, what: str) -> None:
    if external:
        raise MergefrontError(f"{what} has external objectives: you evaluate its candidates, so `run` starts no "
                              "workers for it. Submit it to a server (`mergefront submit SPEC`) and drive it with "
                              "the SDK (job.ask(), job.tell(candidate, metrics)) or REST (POST /v1/jobs/ID/ask, "
                              "POST /v1/evaluations/ID/tell)")


def _export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mergefront.service import repository as repo
    from mergefront.service.db import make_engine, make_session_factory, session_scope, upgrade_database
    from mergefront.service.export import export_source
    from mergefront.service.settings import Settings

    if not (args.mergekit or args.checkpoint):
        raise MergefrontError("say what to export: --mergekit FILE and/or --checkpoint DIR")
    settings = Settings(database_url=args.db) if args.db else Settings()
    upgrade_database(settings.resolved_database_url)
    sessions = make_session_factory(make_engine(settings.resolved_database_url))
    with session_scope(sessions) as s:
        evaluation_id = args.evaluation
        if evaluation_id is None:
            if not args.best:
                raise MergefrontError("--job needs --best OBJECTIVE")
            evaluation_id = repo.best_on_front(session=s, job_id=args.job, objective=args.best).id
        source = export_source(session=s, evaluation_id=evaluation_id, settings=settings)
    if args.mergekit == "-":
        print(source.mergekit_yaml())
    elif args.mergekit:
        Path(args.mergekit).write_text(source.mergekit_yaml())
        print(f"evaluation {evaluation_id}: mergekit YAML written to {args.mergekit}")
    if args.checkpoint:
        path = source.materialize(Path(args.checkpoint))
        print(f"evaluation {evaluation_id}: checkpoint written to {path}")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from mergefront.service.db import upgrade_database
    from mergefront.service.settings import Settings

    settings = Settings(database_url=args.db) if args.db else Settings()
    upgrade_database(settings.resolved_database_url)
    print("database schema up to date")
    return 0


def _space(args: argparse.Namespace) -> int:
    from mergefront.service.settings import Settings
    from mergefront.service.space import describe_space, job_space
    from mergefront.spec import load_spec

    spec = load_spec(args.spec)
    print(describe_space(spec, job_space(spec, Settings())))
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mergefront.service.app import create_app
    from mergefront.service.auth import check_auth_setting
    from mergefront.service.settings import LOOPBACK_HOSTS, Settings

    overrides: dict[str, object] = {"database_url": args.db} if args.db else {}
    if args.no_auth:
        overrides["auth_disabled"] = True
    settings = Settings(**overrides)  # type: ignore[arg-type]
    check_auth_setting(settings, args.host)
    if settings.allowed_hosts == list(LOOPBACK_HOSTS) and args.host not in LOOPBACK_HOSTS:
        print(f"note: requests are answered only with a Host header in {settings.allowed_hosts}; set "
              "MERGEFRONT_ALLOWED_HOSTS to the names clients use for this machine", file=sys.stderr)
    app = create_app(settings, run_jobs=not args.no_runner and settings.run_jobs)
    print(f"mergefront API on http://{args.host}:{args.port} (docs at /docs), "
          f"database {settings.resolved_database_url}")
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
            return 0 if info.state == "completed" else 1
    return 0


def _front(args: argparse.Namespace) -> int:
    from mergefront.client import Client

    with Client(args.url, token=args.token) as client:
        print(format_front(client.job(args.job).pareto()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
