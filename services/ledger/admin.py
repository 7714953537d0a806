"""`sesame-ledger-admin`: the operator's tool for a running ledger, and for its migrations.

    sesame-ledger-admin verify [--user USER]        recompute chains and projections
    sesame-ledger-admin summary USER                a user's account summary
    sesame-ledger-admin entries [--user U] [--limit N]   journal entries, one JSON line each
    sesame-ledger-admin sweep [--max-holds N]       journal the expiry of expired holds
    sesame-ledger-admin migrate --database-url URL  bring the schema up to date (no server)
    sesame-ledger-admin wait-for-schema --database-url URL [--timeout-s S]
                                                    exit 0 once the schema is up to date

Commands other than `migrate` and `wait-for-schema` talk to the ledger over gRPC at --address
(default: the SESAME_LEDGER_ADDRESS environment variable, else 127.0.0.1:50051) and print JSON.
Exit codes: 0 success, 1 verification found a mismatch, 2 bad usage, 3 the call failed, 4 the
schema was not up to date in time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from sesame.ledger.v1 import ledger_service_pb2 as pb, ledger_service_pb2_grpc

from services.common.grpc_errors import error_details

ADDRESS_DEFAULT = "127.0.0.1:50051"
EXIT_MISMATCH = 1
EXIT_USAGE = 2
EXIT_CALL_FAILED = 3
EXIT_SCHEMA_NOT_READY = 4
PAGE_SIZE_MAX = 1000
SWEEP_ROUNDS_MAX = 1000


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    if arguments.command == "migrate":
        return _migrate(arguments.database_url)
    if arguments.command == "wait-for-schema":
        return _wait_for_schema(arguments.database_url, arguments.timeout_s)
    try:
        with grpc.insecure_channel(arguments.address) as channel:
            ledger = ledger_service_pb2_grpc.LedgerServiceStub(channel)
            return int(arguments.run(ledger, arguments))
    except grpc.RpcError as error:
        reason = error_details(error).reason
        code = error.code() if isinstance(error, grpc.Call) else None
        details = error.details() if isinstance(error, grpc.Call) else ""
        print(f"error: {code} {reason} {details}".rstrip(), file=sys.stderr)
        return EXIT_CALL_FAILED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sesame-ledger-admin", description="Operate a Sesame ledger."
    )
    parser.add_argument(
        "--address",
        default=os.environ.get("SESAME_LEDGER_ADDRESS", ADDRESS_DEFAULT),
        help="the ledger's gRPC address (default: $SESAME_LEDGER_ADDRESS or %(default)s)",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds each call may take")
    commands = parser.add_subparsers(dest="command", required=True)

    verify = commands.add_parser("verify", help="recompute hash chains and projections")
    verify.add_argument("--user", default="", help="only this user (default: every user)")
    verify.set_defaults(run=_verify)

    summary = commands.add_parser("summary", help="print a user's account summary")
    summary.add_argument("user")
    summary.set_defaults(run=_summary)

    entries = commands.add_parser("entries", help="print journal entries, oldest first")
    entries.add_argument("--user", default="", help="only this user's entries")
    entries.add_argument("--limit", type=_positive, default=100, help="at most this many")
    entries.set_defaults(run=_entries)

    sweep = commands.add_parser("sweep", help="journal the expiry of holds past their expiry")
    sweep.add_argument("--max-holds", type=_positive, default=1000, help="per call to the ledger")
    sweep.set_defaults(run=_sweep)

    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    wait = commands.add_parser(
        "wait-for-schema", help="wait until the schema is up to date (before a ledger starts)"
    )
    wait.add_argument(
        "--timeout-s", type=float, default=600.0, help="give up after this long (%(default)s)"
    )
    for command in (migrate, wait):
        command.add_argument(
            "--database-url",
            default=os.environ.get("SESAME_LEDGER_DATABASE_URL"),
            required="SESAME_LEDGER_DATABASE_URL" not in os.environ,
            help="the ledger's database (default: $SESAME_LEDGER_DATABASE_URL)",
        )
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _verify(ledger: ledger_service_pb2_grpc.LedgerServiceStub, arguments: Any) -> int:
    report = ledger.VerifyChain(
        pb.VerifyChainRequest(user_id=arguments.user), timeout=arguments.timeout
    )
    _print(report)
    return 0 if report.intact else EXIT_MISMATCH


def _summary(ledger: ledger_service_pb2_grpc.LedgerServiceStub, arguments: Any) -> int:
    request = pb.GetAccountSummaryRequest(user_id=arguments.user)
    _print(ledger.GetAccountSummary(request, timeout=arguments.timeout).account)
    return 0


def _entries(ledger: ledger_service_pb2_grpc.LedgerServiceStub, arguments: Any) -> int:
    remaining = arguments.limit
    page_token = ""
    while remaining > 0:
        request = pb.ListEntriesRequest(
            user_id=arguments.user, page_size=min(remaining, PAGE_SIZE_MAX), page_token=page_token
        )
        page = ledger.ListEntries(request, timeout=arguments.timeout)
        for entry in page.entries:
            _print(entry)
        remaining -= len(page.entries)
        page_token = page.next_page_token
        if not page_token:
            break
    return 0


def _sweep(ledger: ledger_service_pb2_grpc.LedgerServiceStub, arguments: Any) -> int:
    expired_count = 0
    for _ in range(SWEEP_ROUNDS_MAX):
        request = pb.SweepExpiredHoldsRequest(max_holds=arguments.max_holds)
        result = ledger.SweepExpiredHolds(request, timeout=arguments.timeout)
        expired_count += result.expired_count
        if not result.more_remaining:
            break
    print(json.dumps({"expired_count": expired_count}))
    return 0


def _migrate(database_url: str) -> int:
    # Imported here: the gRPC commands must not need the storage's dependencies.
    from services.ledger.storage.migrate import upgrade

    upgrade(database_url)
    print(json.dumps({"migrated": True}))
    return 0


def _wait_for_schema(database_url: str, timeout_s: float) -> int:
    from services.common.migrations import wait_for_schema
    from services.ledger.storage.migrate import MIGRATIONS_DIRECTORY, VERSION_TABLE

    ready = wait_for_schema(MIGRATIONS_DIRECTORY, database_url, VERSION_TABLE, timeout_s=timeout_s)
    print(json.dumps({"schema_current": ready}))
    return 0 if ready else EXIT_SCHEMA_NOT_READY


def _print(message: Message) -> None:
    as_dict = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    print(json.dumps(as_dict, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
