"""`sesame-ledger-admin`: the operator's tool for a running ledger, and for its migrations.

    sesame-ledger-admin verify [--user USER] [--checkpoint-log FILE --public-key FILE]
                                                    recompute chains and projections, and hold
                                                    them against the log's latest checkpoint
    sesame-ledger-admin prove USER --checkpoint-log FILE --public-key FILE
                                                    prove the user's chain head against the
                                                    log's latest checkpoint
    sesame-ledger-admin summary USER                a user's account summary
    sesame-ledger-admin entries [--user U] [--limit N]   journal entries, one JSON line each
    sesame-ledger-admin sweep [--max-holds N]       journal the expiry of expired holds
    sesame-ledger-admin migrate --database-url URL  bring the schema up to date (no server)
    sesame-ledger-admin wait-for-schema --database-url URL [--timeout-s S]
                                                    exit 0 once the schema is up to date
    sesame-ledger-admin new-checkpoint-key --key-file FILE --public-key-file FILE
                                                    make a checkpoint signing key (no server)

Commands other than `migrate`, `wait-for-schema` and `new-checkpoint-key` talk to the ledger over
gRPC at --address (default: the SESAME_LEDGER_ADDRESS environment variable, else
127.0.0.1:50051) and print JSON. A checkpoint read from the log is checked here, with the public
key the operator keeps, before the ledger is asked anything: the ledger's own word on its
signature is not what an operator should rely on.
Exit codes: 0 success, 1 verification found a mismatch (or a checkpoint or proof that does not
hold), 2 bad usage, 3 the call failed, 4 the schema was not up to date in time.
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

from services.common.channels import add_tls_arguments, tool_channel
from services.common.grpc_errors import error_details
from services.ledger.adapters.checkpoint_keys import create_signing_key, load_public_key
from services.ledger.adapters.checkpoint_log import read_latest_checkpoint
from services.ledger.domain.checkpoints import ChainLeaf, Checkpoint, CheckpointProof

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
    if arguments.command == "new-checkpoint-key":
        return _new_checkpoint_key(arguments.key_file, arguments.public_key_file)
    if getattr(arguments, "checkpoint_log", None) and not arguments.public_key:
        print("error: --checkpoint-log needs --public-key", file=sys.stderr)
        return EXIT_USAGE
    try:
        channel = tool_channel(arguments.address, arguments)
    except OSError as error:  # a certificate or key file that cannot be read
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with channel:
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
    add_tls_arguments(parser)
    commands = parser.add_subparsers(dest="command", required=True)

    verify = commands.add_parser("verify", help="recompute hash chains and projections")
    verify.add_argument("--user", default="", help="only this user (default: every user)")
    _add_checkpoint_arguments(verify, required=False)
    verify.set_defaults(run=_verify)

    prove = commands.add_parser("prove", help="prove a user's chain head against a checkpoint")
    prove.add_argument("user")
    _add_checkpoint_arguments(prove, required=True)
    prove.set_defaults(run=_prove)

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

    new_key = commands.add_parser("new-checkpoint-key", help="make a checkpoint signing key")
    new_key.add_argument("--key-file", required=True, help="the private key (created 0600)")
    new_key.add_argument("--public-key-file", required=True, help="its public half")

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


def _add_checkpoint_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--checkpoint-log", required=required, help="the ledger's checkpoint log (JSON lines)"
    )
    parser.add_argument(
        "--public-key", required=required, help="the checkpoint key's public half (PEM)"
    )


def _latest_logged_checkpoint(arguments: Any) -> Checkpoint | None:
    """The log's latest checkpoint, its signature checked with the operator's public key;
    None, with the reason printed, when there is none or it does not verify."""
    checkpoint = read_latest_checkpoint(arguments.checkpoint_log)
    if checkpoint is None:
        print(f"error: {arguments.checkpoint_log} holds no checkpoint", file=sys.stderr)
        return None
    public_key = load_public_key(arguments.public_key)
    signed = checkpoint.key_id == public_key.key_id and public_key.verify(
        bytes.fromhex(checkpoint.signature), checkpoint.signed_bytes()
    )
    if not signed:
        print(
            f"error: checkpoint {checkpoint.checkpoint_sequence} in {arguments.checkpoint_log}"
            " is not signed by the key in --public-key",
            file=sys.stderr,
        )
        return None
    return checkpoint


def _verify(ledger: ledger_service_pb2_grpc.LedgerServiceStub, arguments: Any) -> int:
    request = pb.VerifyChainRequest(user_id=arguments.user)
    if arguments.checkpoint_log:
        checkpoint = _latest_logged_checkpoint(arguments)
        if checkpoint is None:
            return EXIT_MISMATCH
        request.checkpoint.CopyFrom(_checkpoint_message(checkpoint))
    report = ledger.VerifyChain(request, timeout=arguments.timeout)
    _print(report)
    return 0 if report.intact else EXIT_MISMATCH


def _prove(ledger: ledger_service_pb2_grpc.LedgerServiceStub, arguments: Any) -> int:
    checkpoint = _latest_logged_checkpoint(arguments)
    if checkpoint is None:
        return EXIT_MISMATCH
    request = pb.GetCheckpointProofRequest(
        user_id=arguments.user, checkpoint_sequence=checkpoint.checkpoint_sequence
    )
    response = ledger.GetCheckpointProof(request, timeout=arguments.timeout)
    proof = CheckpointProof(
        # The logged checkpoint, not the ledger's copy: the proof must lead to the root the
        # operator holds.
        checkpoint=checkpoint,
        leaf=ChainLeaf(response.leaf.user_id, response.leaf.user_sequence, response.leaf.hash),
        leaf_index=response.leaf_index,
        tree_size=response.tree_size,
        audit_path=tuple(response.audit_path),
    )
    verified = response.leaf.user_id == arguments.user and proof.leads_to_the_root()
    print(
        json.dumps(
            {
                "verified": verified,
                "checkpoint_sequence": checkpoint.checkpoint_sequence,
                "global_sequence": checkpoint.global_sequence,
                "user_id": response.leaf.user_id,
                "user_sequence": response.leaf.user_sequence,
                "hash": response.leaf.hash,
            },
            sort_keys=True,
        )
    )
    return 0 if verified else EXIT_MISMATCH


def _checkpoint_message(checkpoint: Checkpoint) -> pb.Checkpoint:
    message = pb.Checkpoint(
        checkpoint_sequence=checkpoint.checkpoint_sequence,
        global_sequence=checkpoint.global_sequence,
        user_count=checkpoint.user_count,
        merkle_root=checkpoint.merkle_root,
        key_id=checkpoint.key_id,
        signature=checkpoint.signature,
    )
    seconds, microseconds = divmod(checkpoint.signed_at_us, 1_000_000)
    message.sign_time.seconds, message.sign_time.nanos = seconds, microseconds * 1000
    return message


def _new_checkpoint_key(key_file: str, public_key_file: str) -> int:
    if os.path.exists(key_file):
        print(f"error: {key_file} exists; a key is never overwritten", file=sys.stderr)
        return EXIT_USAGE
    key = create_signing_key(key_file, public_key_file)
    print(json.dumps({"key_id": key.key_id, "public_key_file": public_key_file}))
    return 0


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
