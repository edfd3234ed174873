"""`python -m engine <command>`: the engine's command line.

Commands: `migrate` (apply the SQL migrations), `serve` (run the server),
`token` (mint a JWT for local use), `demo` (run the local demo), `verify-log`
(check an auction's public bid log and signed result).
Each command is one `_add_<name>` function registering its parser and handler,
so `serve` and `token` slot in the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import uuid
from collections.abc import Callable, Sequence

from engine import verify_log
from engine.config import Settings
from engine.database import database_dsn
from engine.errors import ConfigError, DatabaseStartError, MigrationError
from engine.migrations import migrate
from engine.tokens import mint_token
from server import demo
from server.serve import serve

Handler = Callable[[argparse.Namespace, Settings], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Configured before the settings are read, so their own warnings are formatted too.
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler: Handler = args.handler
    if not args.reads_settings:  # a command that is no part of a running engine
        return handler(args, Settings())
    try:
        settings = Settings.from_env()
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(settings.log_level)
    return handler(args, settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description="Dealer360's real-time auction engine. Settings come from the environment "
        "(DATABASE_URL, ENGINE_DATA_DIR, REDIS_URL, JWT_SECRET, INTERNAL_API_TOKEN, ...).",
    )
    commands = parser.add_subparsers(title="commands", dest="command", required=True)
    parser.set_defaults(reads_settings=True)
    _add_migrate(commands)
    _add_serve(commands)
    _add_token(commands)
    _add_demo(commands)
    _add_verify_log(commands)
    return parser


def _add_migrate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "migrate",
        help="apply pending SQL migrations",
        description="Apply the pending migrations in sql/ to DATABASE_URL, or to the embedded "
        "PostgreSQL in ENGINE_DATA_DIR when DATABASE_URL is unset.",
    )
    parser.set_defaults(handler=_run_migrate)


def _run_migrate(args: argparse.Namespace, settings: Settings) -> int:
    try:
        applied = asyncio.run(_migrate(settings))
    except (MigrationError, DatabaseStartError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if applied:
        for name in applied:
            print(f"applied {name}")
    else:
        print("nothing to apply: the database is up to date")
    return 0


async def _migrate(settings: Settings) -> list[str]:
    async with database_dsn(settings) as dsn:
        return await migrate(dsn)


def _add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "serve",
        help="run the engine's server",
        description="Run the HTTP and WebSocket server (aiohttp on uvloop). Start-up applies "
        "migrations and rebuilds the core from the ledger; SIGTERM stops taking bids, flushes "
        "the ledger and closes the sockets.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.set_defaults(handler=_run_serve)


def _run_serve(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return serve(settings, host=args.host, port=args.port)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _add_token(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "token",
        help="print a JWT for local use",
        description="Print a bearer token for user ID, signed with JWT_SECRET (HS256). The "
        "engine judges the caller by its users row: the role claim is informative only.",
    )
    parser.add_argument("--user", required=True, type=uuid.UUID, metavar="ID", help="user id")
    parser.add_argument("--role", default="user", help="the token's role claim (default: user)")
    parser.add_argument(
        "--ttl", type=_positive_seconds, default=3600, metavar="SECONDS", help="default 3600"
    )
    parser.set_defaults(handler=_run_token)


def _positive_seconds(value: str) -> int:
    try:
        seconds = int(value, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of seconds") from None
    if seconds < 1:
        raise argparse.ArgumentTypeError("the token must live at least 1 second")
    return seconds


def _run_token(args: argparse.Namespace, settings: Settings) -> int:
    print(mint_token(args.user, args.role, settings.jwt_secret, ttl_s=args.ttl))
    return 0


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "demo", help="run the local demo", description="Run the engine's local demo."
    )
    parser.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return demo.main(settings)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _add_verify_log(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "verify-log",
        help="check an auction's public bid log and its signed result",
        description="Recompute the chain of a GET /api/auctions/{id}/log body (a URL, or a "
        "file), check its handles and, once the auction ended, its Ed25519-signed result "
        "against the published keys. Exit 0 when everything holds, 1 naming the first broken "
        "bid or the bad signature, 2 when the log or keys cannot be read.",
    )
    verify_log.add_arguments(parser)
    parser.set_defaults(handler=_run_verify_log, reads_settings=False)


def _run_verify_log(args: argparse.Namespace, settings: Settings) -> int:
    return verify_log.run(args)


if __name__ == "__main__":
    sys.exit(main())
