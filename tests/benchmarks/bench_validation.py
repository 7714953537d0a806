"""What protovalidate would cost the ledger, against its hand-written validation.

`make bench-validation` (or `python -m tests.benchmarks.bench_validation`) measures, in one
process and interleaved round by round, so that the machine's drift touches both alike:

* hand: what the ledger does today for a request: `api/mapping.py` reads it into a command and
  `domain/validation.py` checks the command;
* protovalidate: `protovalidate.validate()` on the same request, with the same rules declared
  as `buf.validate` annotations.

for a typical PlaceHoldRequest and a RecordPartnerStatementsRequest of 1000 reports (each a
credit line and six statements, as the Taiwan replay sends them). The contract itself does not
carry `buf.validate` annotations, so the run builds an annotated copy of its descriptors in a
descriptor pool of its own (the request types are the contract's, field for field) and states
there the rules `domain/validation.py` checks. The rules are checked to agree with the hand
validation on a bad request of each kind before anything is timed.

Printed: microseconds per request for each, the ratio protovalidate / hand, and protovalidate's
share of the ledger's CPU budget per operation (for the batch, per report, each report being one
user's write). The last lines are `RESULT <name> <value>`.

    python -m tests.benchmarks.bench_validation [--rounds 7] [--quick] [--budget-us 1400]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
if __package__ in (None, ""):
    sys.path.insert(0, str(REPOSITORY_ROOT))

from google.protobuf import (  # noqa: E402
    descriptor,
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,
    field_mask_pb2,
    json_format,
    message,
    message_factory,
    timestamp_pb2,
)
from sesame.ledger.v1 import ledger_service_pb2 as pb  # noqa: E402
from sesame.type.v1 import money_pb2  # noqa: E402

from services.common.errors import InvalidArgument  # noqa: E402
from services.common.money import CURRENCY_MINOR_UNITS, MAX_AMOUNT_MINOR  # noqa: E402
from services.datasets import taiwan  # noqa: E402
from services.ledger.api import mapping  # noqa: E402
from services.ledger.domain import validation  # noqa: E402

try:
    import protovalidate
except ImportError:  # pragma: no cover - the dev extra installs it
    sys.exit("protovalidate is not installed: run `make install` (it is in the dev extra)")

# The ledger's CPU budget per operation (what bench-ledger reports as ledger_cpu_ms_per_op),
# against which protovalidate's share is reported; --budget-us changes it.
LEDGER_CPU_BUDGET_PER_OPERATION_US = 1400.0
REPORTS_PER_BATCH = 1000
SAMPLE_CSV = REPOSITORY_ROOT / "tests" / "fixtures" / "taiwan_sample.csv"

# buf.validate's extension numbers on FieldOptions and MessageOptions (validate.proto).
_FIELD_RULES_EXTENSION = 1159
_MESSAGE_RULES_EXTENSION = 1159

# What `services.common.validation` accepts for ids and free texts, as CEL regular expressions.
_ID_PATTERN = r"^[ -~]*[!-~][ -~]*$"
_TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"


# ----------------------------------------------------------------------------------------------
# The annotated copy of the contract


class AnnotatedContract:
    """The contract's ledger messages in a pool of their own, carrying buf.validate rules."""

    def __init__(self) -> None:
        self.pool = descriptor_pool.DescriptorPool()
        self._added: set[str] = set()
        validate_file = protovalidate.ViolationsPb.desc().file.proto.to_binary()
        for dependency in _well_known_files():
            self._add_file(dependency)
        self.pool.AddSerializedFile(validate_file)
        self.field_rules = self._message_class("buf.validate.FieldRules")
        self.message_rules = self._message_class("buf.validate.MessageRules")
        for dependency in pb.DESCRIPTOR.dependencies:
            self._add_file(dependency)
        ledger_file = descriptor_pb2.FileDescriptorProto()
        pb.DESCRIPTOR.CopyToProto(ledger_file)
        self._annotate(ledger_file)
        self.pool.Add(ledger_file)
        self.place_hold_request = self._message_class("sesame.ledger.v1.PlaceHoldRequest")
        self.statements_request = self._message_class(
            "sesame.ledger.v1.RecordPartnerStatementsRequest"
        )

    def _add_file(self, file: descriptor.FileDescriptor) -> None:
        if file.name in self._added:
            return
        for dependency in file.dependencies:
            self._add_file(dependency)
        self.pool.AddSerializedFile(file.serialized_pb)
        self._added.add(file.name)

    def _message_class(self, full_name: str) -> type[message.Message]:
        return message_factory.GetMessageClass(self.pool.FindMessageTypeByName(full_name))

    def _annotate(self, file: descriptor_pb2.FileDescriptorProto) -> None:
        messages = {message_type.name: message_type for message_type in file.message_type}
        identifier = {"required": True, "string": {"max_len": 128, "pattern": _ID_PATTERN}}
        text_128 = {"string": {"max_len": 128, "pattern": _TEXT_PATTERN}}

        place_hold = messages["PlaceHoldRequest"]
        self._field(place_hold, "request_id", identifier)
        self._field(place_hold, "user_id", identifier)
        self._field(place_hold, "amount", _money_rules("this.amount_minor > 0", "positive"))
        self._field(
            place_hold,
            "expires_in",
            {"required": True, "duration": {"gte": "0.000001s", "lte": f"{366 * 86_400}s"}},
        )
        self._field(place_hold, "reference", text_128)

        batch = messages["RecordPartnerStatementsRequest"]
        self._field(batch, "request_id", identifier)
        self._field(batch, "reports", {"repeated": {"min_items": 1, "max_items": 1000}})
        self._message(
            batch,
            "reports.unique_user",
            "this.reports.map(r, r.user_id).unique() ? '' : 'a user appears twice'",
        )
        report = messages["PartnerReport"]
        self._field(report, "user_id", identifier)
        self._field(report, "partner_id", identifier)
        self._field(
            report,
            "credit_line",
            _money_rules("this.amount_minor > 0", "positive", required=False),
        )
        self._field(report, "statements", {"repeated": {"max_items": 24}})
        self._message(
            report,
            "statements.unique_period",
            "this.statements.map(s, s.period.year * 100 + s.period.month).unique()"
            " ? '' : 'a period appears twice'",
        )
        statement = messages["Statement"]
        self._field(statement, "period", {"required": True})
        self._field(statement, "balance", _money_rules("true", "any"))
        self._field(
            statement, "amount_paid", _money_rules("this.amount_minor >= 0", "not negative")
        )
        self._field(
            statement, "repayment_status", {"required": True, "enum": {"defined_only": True}}
        )
        self._message(
            statement,
            "statement.months_late",
            "(this.repayment_status == 4 ? (this.months_late >= 1 && this.months_late <= 99)"
            " : this.months_late == 0) ? '' : 'months_late does not fit repayment_status'",
        )
        self._message(
            statement,
            "statement.currency",
            "this.balance.currency_code == this.amount_paid.currency_code"
            " ? '' : 'amount_paid must be in the currency of the balance'",
        )
        period = messages["StatementPeriod"]
        self._field(period, "year", {"int32": {"gte": 1900, "lte": 9999}})
        self._field(period, "month", {"int32": {"gte": 1, "lte": 12}})

    def _field(self, message_type: Any, name: str, rules: dict[str, Any]) -> None:
        field = next(field for field in message_type.field if field.name == name)
        encoded = _encode_rules(self.field_rules, rules)
        field.options.MergeFromString(_length_delimited(_FIELD_RULES_EXTENSION, encoded))

    def _message(self, message_type: Any, rule_id: str, expression: str) -> None:
        encoded = _encode_rules(
            self.message_rules, {"cel": [{"id": rule_id, "expression": expression}]}
        )
        message_type.options.MergeFromString(_length_delimited(_MESSAGE_RULES_EXTENSION, encoded))


def _money_rules(sign_expression: str, sign: str, *, required: bool = True) -> dict[str, Any]:
    """A Money field's rules: a known currency (Money's own rule), a sign, below the maximum."""
    return {
        "required": required,
        "cel": [
            {
                "id": f"money.{sign.replace(' ', '_')}",
                "expression": (
                    f"({sign_expression}) && this.amount_minor < {MAX_AMOUNT_MINOR}"
                    f" && this.amount_minor > -{MAX_AMOUNT_MINOR}"
                    f" && this.currency_code in {_cel_list(sorted(CURRENCY_MINOR_UNITS))}"
                    f" ? '' : 'must be {sign}, below the maximum, in a known currency'"
                ),
            }
        ],
    }


def _cel_list(values: list[str]) -> str:
    return "[" + ", ".join(f"'{value}'" for value in values) + "]"


def _encode_rules(rules_class: type[message.Message], rules: dict[str, Any]) -> bytes:
    return json_format.ParseDict(rules, rules_class()).SerializeToString()


def _length_delimited(field_number: int, payload: bytes) -> bytes:
    return _varint(field_number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    encoded = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            encoded.append(byte | 0x80)
        else:
            encoded.append(byte)
            return bytes(encoded)


def _well_known_files() -> list[descriptor.FileDescriptor]:
    return [
        descriptor_pb2.DESCRIPTOR,
        duration_pb2.DESCRIPTOR,
        field_mask_pb2.DESCRIPTOR,
        timestamp_pb2.DESCRIPTOR,
    ]


# ----------------------------------------------------------------------------------------------
# Typical requests


def typical_place_hold() -> pb.PlaceHoldRequest:
    request = pb.PlaceHoldRequest(
        request_id="order-20261121-000042:place",
        user_id="user-7f3a9c",
        amount=money_pb2.Money(currency_code="CNY", amount_minor=29_900),
        reference="bike-rental-000042",
    )
    request.expires_in.seconds = 6 * 3600
    return request


def typical_statements_batch() -> pb.RecordPartnerStatementsRequest:
    rows = list(taiwan.read_rows(SAMPLE_CSV))
    reports = [
        taiwan.to_partner_report(
            dataclasses.replace(rows[index % len(rows)], client_id=100_000 + index)
        )
        for index in range(REPORTS_PER_BATCH)
    ]
    return pb.RecordPartnerStatementsRequest(request_id="replay-batch-0001", reports=reports)


# ----------------------------------------------------------------------------------------------
# Measuring


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    hand: Callable[[], None]
    generated: Callable[[], None]


def per_call_us(function: Callable[[], None], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - started) / calls * 1e6


def measure(workload: Workload, calls: int, rounds: int) -> tuple[float, float]:
    """Median microseconds per call of each, rounds interleaved."""
    workload.hand()
    workload.generated()
    hand, generated = [], []
    for _ in range(rounds):
        hand.append(per_call_us(workload.hand, calls))
        generated.append(per_call_us(workload.generated, calls))
    return statistics.median(hand), statistics.median(generated)


def check_rules_agree(contract: AnnotatedContract) -> None:
    """The annotated rules reject what the hand validation rejects (and accept the typical)."""
    bad_hold = typical_place_hold()
    bad_hold.amount.amount_minor = 0
    bad_batch = typical_statements_batch()
    bad_batch.reports[3].statements[1].period.month = 13
    cases = [
        (typical_place_hold(), contract.place_hold_request, _hand_place_hold, True),
        (bad_hold, contract.place_hold_request, _hand_place_hold, False),
        (typical_statements_batch(), contract.statements_request, _hand_statements, True),
        (bad_batch, contract.statements_request, _hand_statements, False),
    ]
    for request, annotated_class, hand, valid in cases:
        annotated = annotated_class.FromString(request.SerializeToString())
        protovalidate_valid = not protovalidate.collect_violations(annotated)
        try:
            hand(request)
            hand_valid = True
        except InvalidArgument:
            hand_valid = False
        if (protovalidate_valid, hand_valid) != (valid, valid):
            raise SystemExit(
                f"the annotated rules and the hand validation disagree on a"
                f" {type(request).__name__}: protovalidate {protovalidate_valid},"
                f" hand {hand_valid}, expected {valid}"
            )


def _hand_place_hold(request: pb.PlaceHoldRequest) -> None:
    validation.validate_place_hold(mapping.place_hold_command(request))


def _hand_statements(request: pb.RecordPartnerStatementsRequest) -> None:
    validation.validate_record_partner_statements(
        mapping.record_partner_statements_command(request)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="fewer calls, for a smoke run")
    parser.add_argument("--budget-us", type=float, default=LEDGER_CPU_BUDGET_PER_OPERATION_US)
    arguments = parser.parse_args(argv)
    scale = 10 if arguments.quick else 1

    contract = AnnotatedContract()
    check_rules_agree(contract)
    place_hold = typical_place_hold()
    place_hold_annotated = contract.place_hold_request.FromString(place_hold.SerializeToString())
    batch = typical_statements_batch()
    batch_annotated = contract.statements_request.FromString(batch.SerializeToString())
    workloads = [
        (
            Workload(
                "place_hold",
                lambda: _hand_place_hold(place_hold),
                lambda: protovalidate.validate(place_hold_annotated),
            ),
            2000 // scale,
            1,
        ),
        (
            Workload(
                "statements_1000",
                lambda: _hand_statements(batch),
                lambda: protovalidate.validate(batch_annotated),
            ),
            max(1, 10 // scale),
            REPORTS_PER_BATCH,
        ),
    ]
    results: list[tuple[str, float]] = []
    print(f"{'request':<18}{'hand µs':>12}{'protovalidate µs':>18}{'ratio':>8}{'budget share':>14}")
    for workload, calls, operations in workloads:
        hand_us, generated_us = measure(workload, calls, arguments.rounds)
        ratio = generated_us / hand_us
        # A batch is one request but `operations` ledger operations (one report each).
        share = generated_us / operations / arguments.budget_us
        print(
            f"{workload.name:<18}{hand_us:>12.1f}{generated_us:>18.1f}{ratio:>8.2f}{share:>13.1%}"
        )
        results += [
            (f"{workload.name}_hand_us", hand_us),
            (f"{workload.name}_protovalidate_us", generated_us),
            (f"{workload.name}_protovalidate_to_hand", ratio),
            (f"{workload.name}_protovalidate_budget_share", share),
        ]
    for name, value in results:
        print(f"RESULT {name} {value:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
