"""`sesame-waiver-admin`: the waiver's schema, for production's separate migration step.

    sesame-waiver-admin migrate --database-url URL           bring the schema up to date
    sesame-waiver-admin wait-for-schema --database-url URL   exit 0 once it is up to date

Both default to the SESAME_WAIVER_DATABASE_URL environment variable. The Kubernetes manifests
(deploy/overlays/prod) run `migrate` as a Job and `wait-for-schema` before each waiver pod starts.
Exit codes: 0 success, 2 bad usage, 4 the schema was not up to date in time.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence

from services.common.migrations import wait_for_schema
from services.waiver.storage.migrate import MIGRATIONS_DIRECTORY, VERSION_TABLE, upgrade

DATABASE_URL_VARIABLE = "SESAME_WAIVER_DATABASE_URL"
EXIT_SCHEMA_NOT_READY = 4


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    if arguments.command == "migrate":
        upgrade(arguments.database_url)
        print(json.dumps({"migrated": True}))
        return 0
    ready = wait_for_schema(
        MIGRATIONS_DIRECTORY, arguments.database_url, VERSION_TABLE, timeout_s=arguments.timeout_s
    )
    print(json.dumps({"schema_current": ready}))
    return 0 if ready else EXIT_SCHEMA_NOT_READY


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sesame-waiver-admin", description="Migrate a Sesame waiver's database."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    wait = commands.add_parser("wait-for-schema", help="wait until the schema is up to date")
    wait.add_argument(
        "--timeout-s", type=float, default=600.0, help="give up after this long (%(default)s)"
    )
    for command in (migrate, wait):
        command.add_argument(
            "--database-url",
            default=os.environ.get(DATABASE_URL_VARIABLE),
            required=DATABASE_URL_VARIABLE not in os.environ,
            help=f"the waiver's database (default: ${DATABASE_URL_VARIABLE})",
        )
    return parser
