"""The operator's commands: `mergefront token create|list|revoke` (on the server's database, so the first token
needs no server) and `mergefront evaluators` (what jobs may name, from a server or from this machine)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """--url and --token, defaulting to MERGEFRONT_URL and MERGEFRONT_TOKEN."""
    parser.add_argument("--url", default=os.environ.get("MERGEFRONT_URL", DEFAULT_URL),
                        help="the server (default: MERGEFRONT_URL or %(default)s)")
    parser.add_argument("--token", default=os.environ.get("MERGEFRONT_TOKEN"),
                        help="API token (default: MERGEFRONT_TOKEN)")


def add_commands(sub: Any) -> None:
    token = sub.add_parser("token", help="make, list or revoke API tokens (works on the server's database)")
    actions = token.add_subparsers(required=True, metavar="ACTION")
    create = actions.add_parser("create", help="make a token and print it (shown this once)")
    create.add_argument("name", help="who or what uses it, e.g. alice or ci")
    create.add_argument("--scope", choices=["read", "write", "admin"], default="read",
                        help="read: GET; write: also submit and ask/tell; admin: also tokens and server-side exports")
    create.add_argument("--expires-days", type=float, metavar="DAYS", help="expire after DAYS (default: never)")
    create.set_defaults(func=_token_create)
    listing = actions.add_parser("list", help="list tokens (their prefix, never the token)")
    listing.set_defaults(func=_token_list)
    revoke = actions.add_parser("revoke", help="revoke a token at once")
    revoke.add_argument("id", type=int, help="the token's id (see `mergefront token list`)")
    revoke.set_defaults(func=_token_revoke)
    for parser in (create, listing, revoke):
        parser.add_argument("--db", metavar="URL", help="SQLAlchemy URL (default: MERGEFRONT_DATABASE_URL or "
                            "~/.mergefront)")

    evaluators = sub.add_parser("evaluators", help="list the evaluators a job may name on a server (plug-ins too)")
    add_server_options(evaluators)
    evaluators.add_argument("--local", action="store_true",
                            help="list what `mergefront serve` would allow on this machine instead")
    evaluators.set_defaults(func=_evaluators)


def _sessions(db: str | None) -> Any:
    from mergefront.service.db import make_engine, make_session_factory, upgrade_database
    from mergefront.service.settings import Settings

    url = (Settings(database_url=db) if db else Settings()).resolved_database_url
    upgrade_database(url)
    return make_session_factory(make_engine(url))


def _token_create(args: argparse.Namespace) -> int:
    from mergefront.service.db import session_scope
    from mergefront.service.models import TokenScope
    from mergefront.service.tokens import create_token

    with session_scope(_sessions(args.db)) as s:
        made = create_token(session=s, name=args.name, scope=TokenScope(args.scope), expires_days=args.expires_days)
    print(made.token)
    print(f"token {made.info.id} ({made.info.name}, scope {made.info.scope.value}) made; it is shown only now. "
          "Use it as: export MERGEFRONT_TOKEN=<the line above>", file=sys.stderr)
    return 0


def _token_list(args: argparse.Namespace) -> int:
    from mergefront.service.db import session_scope
    from mergefront.service.tokens import list_tokens

    with session_scope(_sessions(args.db)) as s:
        rows = list_tokens(session=s)
    print(f"{'id':>4}  {'name':<20} {'scope':<6} {'prefix':<12} {'created':<19}  {'last used':<19}  state")
    for t in rows:
        state = "revoked" if t.revoked_at else f"expires {t.expires_at:%Y-%m-%d %H:%M}" if t.expires_at else "active"
        used = f"{t.last_used_at:%Y-%m-%d %H:%M:%S}" if t.last_used_at else "never"
        print(f"{t.id:>4}  {t.name[:20]:<20} {t.scope.value:<6} {t.prefix + '...':<12} "
              f"{t.created_at:%Y-%m-%d %H:%M:%S}  {used:<19}  {state}")
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    from mergefront.service.db import session_scope
    from mergefront.service.tokens import revoke_token

    with session_scope(_sessions(args.db)) as s:
        info = revoke_token(session=s, token_id=args.id)
    print(f"token {info.id} ({info.name}) revoked")
    return 0


def _evaluators(args: argparse.Namespace) -> int:
    if args.local:
        from mergefront.plugins import Registry
        from mergefront.service.routes.evaluators import evaluator_list
        from mergefront.service.settings import Settings

        items = evaluator_list(Registry.discover(Settings().plugins))
    else:
        from mergefront.client import Client

        with Client(args.url, token=args.token) as client:
            items = client.evaluators()
    for e in items:
        print(f"{e.name:<40} {e.kind:<9} {e.description}")
    return 0
