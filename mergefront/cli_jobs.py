"""The CLI's commands on stored jobs: list, show the front, download evaluations, export, cancel, delete, rename,
annotate. Each talks to a server (--url, or $MERGEFRONT_URL) or, by default, to the local database through the
same API run in this process, so both give the same answers and the same errors."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import httpx

from mergefront.client import Client, Job, TableFormat
from mergefront.errors import MergefrontError, NotFoundError
from mergefront.report import format_front, format_jobs, format_ranking

STATES = ["pending", "running", "completed", "failed", "cancelled"]
SORTS = ["id", "name", "state", "optimizer", "created_at", "finished_at"]


def add_job_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add jobs, front, evaluations, export, cancel, delete, rename and notes to the `mergefront` parser."""
    where = argparse.ArgumentParser(add_help=False)
    group = where.add_mutually_exclusive_group()
    group.add_argument("--url", help="a server (default: MERGEFRONT_URL; without it, the local database)")
    group.add_argument("--db", metavar="URL", help="a database URL (default: MERGEFRONT_DATABASE_URL or "
                       "~/.mergefront/mergefront.db, where `run` and `serve` keep jobs)")
    where.add_argument("--token", default=os.environ.get("MERGEFRONT_TOKEN"),
                       help="API token for --url (default: MERGEFRONT_TOKEN)")

    jobs = sub.add_parser("jobs", parents=[where], help="list jobs, newest first")
    jobs.add_argument("--search", metavar="WORDS", help="only jobs whose name or notes contain every word")
    jobs.add_argument("--state", choices=STATES, help="only jobs in this state")
    jobs.add_argument("--sort", choices=SORTS, default="id", help="sort by this column (default: %(default)s)")
    jobs.add_argument("--ascending", action="store_true", help="smallest first (default: largest first)")
    jobs.add_argument("--limit", type=int, default=50, help="at most this many jobs (default: %(default)s)")
    jobs.set_defaults(func=_jobs)

    front = sub.add_parser("front", parents=[where], help="print a job's Pareto front, or rank it by a preference")
    front.add_argument("job", type=int, help="job id")
    front.add_argument("--where", action="append", default=[], metavar="CONSTRAINT",
                       help='keep members meeting it, e.g. "parity_accuracy >= 0.8" (repeatable)')
    front.add_argument("--weight", action="append", default=[], metavar="OBJECTIVE=W",
                       help="rank by weighted objectives, e.g. parity_accuracy=2 (repeatable; others weigh 1)")
    front.set_defaults(func=_front)

    evals = sub.add_parser("evaluations", parents=[where], help="save a job's evaluations as CSV or Parquet")
    evals.add_argument("job", type=int, help="job id")
    out = evals.add_mutually_exclusive_group(required=True)
    out.add_argument("--csv", metavar="FILE", help="write CSV here ('-': print it)")
    out.add_argument("--parquet", metavar="FILE", help="write Parquet here")
    evals.add_argument("--state", choices=[*STATES[:4], "expired"], help="only evaluations in this state")
    evals.add_argument("--front", action="store_true", help="only the members of the latest front")
    evals.add_argument("--filter", action="append", default=[], metavar="EXPR",
                       help='e.g. "parity_accuracy >= 0.8" or "weight.mod3 < 0.2" (repeatable)')
    evals.set_defaults(func=_evaluations)

    export = sub.add_parser("export", parents=[where], help="export an evaluation as a mergekit YAML and/or a "
                            "checkpoint directory")
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("evaluation", type=int, nargs="?", help="evaluation id")
    which.add_argument("--job", type=int, help="with --best: pick from this job's front")
    export.add_argument("--best", metavar="OBJECTIVE", help="the front member best at this objective (ties: the one "
                        "evaluated first)")
    export.add_argument("--mergekit", metavar="FILE", help="write the mergekit YAML here ('-': print it)")
    export.add_argument("--checkpoint", metavar="DIR", help="write the merged model here (a Hugging Face folder)")
    export.set_defaults(func=_export)

    for name, text in (("cancel", "stop a job, keeping its finished evaluations"),
                       ("delete", "delete a finished or cancelled job and all its evaluations")):
        command = sub.add_parser(name, parents=[where], help=text)
        command.add_argument("job", type=int, help="job id")
        command.set_defaults(func=_cancel if name == "cancel" else _delete)
    rename = sub.add_parser("rename", parents=[where], help="give a job a new name")
    rename.add_argument("job", type=int, help="job id")
    rename.add_argument("name", help="the new name")
    rename.set_defaults(func=_rename)
    notes = sub.add_parser("notes", parents=[where], help="replace a job's notes (searched by `jobs --search`)")
    notes.add_argument("job", type=int, help="job id")
    notes.add_argument("text", help="the notes ('-': read them from stdin; '': remove them)")
    notes.set_defaults(func=_notes)


@contextmanager
def connect(args: argparse.Namespace) -> Iterator[Client]:
    """A client of the server named by --url or $MERGEFRONT_URL, else of the local database (--db or default)."""
    url = args.url or (None if args.db else os.environ.get("MERGEFRONT_URL"))
    if url:
        with Client(url, token=args.token) as client:
            yield client
        return
    from starlette.testclient import TestClient

    from mergefront.service.app import create_app
    from mergefront.service.settings import Settings

    # whoever can open the database needs no token (as for `run` and `token create`): the API runs in this
    # process, answering only this process
    settings = Settings(**({"database_url": args.db} if args.db else {}), auth_disabled=True)
    database = settings.resolved_database_url
    with TestClient(create_app(settings, run_jobs=False), base_url="http://127.0.0.1",
                    client=("127.0.0.1", 0)) as http, \
            Client(f"the local database {database}", http=cast(httpx.Client, http)) as client:
        try:
            yield client
        except NotFoundError as exc:
            raise NotFoundError(f"{exc} in {database} (give --url for a server's jobs)") from None


def _jobs(args: argparse.Namespace) -> int:
    with connect(args) as client:
        print(format_jobs(client.jobs(search=args.search, state=args.state, sort=args.sort,
                                      descending=not args.ascending, limit=args.limit)))
    return 0


def _front(args: argparse.Namespace) -> int:
    with connect(args) as client:
        job = client.job(args.job)
        if not (args.where or args.weight):
            print(format_front(job.pareto()))
            return 0
        print(format_ranking(job.rank(args.where, args.weight)))
    return 0


def _evaluations(args: argparse.Namespace) -> int:
    with connect(args) as client:
        fmt: TableFormat = "csv" if args.csv else "parquet"
        data = client.job(args.job).download_evaluations(format=fmt, state=args.state, front=args.front,
                                                         filters=args.filter)
    if args.csv == "-":
        sys.stdout.write(data.decode())
        return 0
    target = Path(args.csv or args.parquet)
    target.write_bytes(data)
    print(f"job {args.job}: {fmt.upper()} written to {target} ({len(data):,} bytes)")
    return 0


def _export(args: argparse.Namespace) -> int:
    if not (args.mergekit or args.checkpoint):
        raise MergefrontError("say what to export: --mergekit FILE and/or --checkpoint DIR")
    if args.evaluation is None and not args.best:
        raise MergefrontError("--job needs --best OBJECTIVE")
    with connect(args) as client:
        evaluation_id = args.evaluation if args.evaluation is not None else _pick_best(client.job(args.job), args.best)
        if client.url.startswith("the local database"):
            from mergefront.cli_export import export_local

            export_local(args.db, evaluation_id, args.mergekit, args.checkpoint)
        else:
            from mergefront.cli_export import export_remote

            export_remote(client, evaluation_id, args.mergekit, args.checkpoint)
    return 0


def _pick_best(job: Job, objective: str) -> int:
    """The id of the job's front member best at `objective`, saying on stderr which it is and how ties broke."""
    info = job.info()
    if objective not in info.objectives:
        raise MergefrontError(f"job {job.id} has no objective {objective!r}; it has {', '.join(info.objectives)}")
    ranking = job.rank(weights={k: float(k == objective) for k in info.objectives}, limit=1)
    best = ranking.recommended
    if best is None:
        raise NotFoundError(f"job {job.id} has no completed evaluation yet")
    tie = (f"; {ranking.tied} front members tie at that value, and the one evaluated first is taken"
           if ranking.tied > 1 else "")
    print(f"job {job.id}: evaluation {best.id} (#{best.number}) has the front's best {objective}, "
          f"{(best.metrics or {})[objective]:.6g}, of {ranking.n_front} members{tie}", file=sys.stderr)
    return best.id


def _cancel(args: argparse.Namespace) -> int:
    with connect(args) as client:
        info = client.job(args.job).cancel()
    print(f"job {info.id} cancelled: {info.n_completed} completed evaluations kept")
    return 0


def _delete(args: argparse.Namespace) -> int:
    with connect(args) as client:
        client.job(args.job).delete()
    print(f"job {args.job} deleted")
    return 0


def _rename(args: argparse.Namespace) -> int:
    with connect(args) as client:
        info = client.job(args.job).rename(args.name)
    print(f"job {info.id} is now named {info.name!r}")
    return 0


def _notes(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.text == "-" else args.text
    with connect(args) as client:
        info = client.job(args.job).set_notes(text or None)
    print(f"job {info.id}: notes " + ("removed" if info.notes is None else "saved"))
    return 0
