"""Every field of the ledger's contract says how it behaves (google.api.field_behavior): what a
client sends is REQUIRED or OPTIONAL, and what only the ledger writes is OUTPUT_ONLY."""

from __future__ import annotations

from google.api import field_behavior_pb2
from google.protobuf import descriptor
from sesame.ledger.v1 import ledger_service_pb2 as pb

REQUIRED = field_behavior_pb2.REQUIRED
OPTIONAL = field_behavior_pb2.OPTIONAL
OUTPUT_ONLY = field_behavior_pb2.OUTPUT_ONLY


def behaviors(field: descriptor.FieldDescriptor) -> set[int]:
    return set(field.GetOptions().Extensions[field_behavior_pb2.field_behavior])


def sent_by_clients() -> set[str]:
    """The ledger's message types a request holds, itself included."""
    pending = [
        message_type
        for name, message_type in pb.DESCRIPTOR.message_types_by_name.items()
        if name.endswith("Request")
    ]
    sent: set[str] = set()
    while pending:
        message_type = pending.pop()
        if message_type.file.name != pb.DESCRIPTOR.name or message_type.full_name in sent:
            continue
        sent.add(message_type.full_name)
        pending.extend(f.message_type for f in message_type.fields if f.message_type is not None)
    return sent


def test_what_clients_send_is_required_or_optional_and_the_rest_output_only():
    sent = sent_by_clients()
    assert "sesame.ledger.v1.StatementPeriod" in sent

    for message_type in pb.DESCRIPTOR.message_types_by_name.values():
        for field in message_type.fields:
            name = f"{message_type.name}.{field.name}"
            if message_type.full_name in sent:
                assert behaviors(field) in ({REQUIRED}, {OPTIONAL}), name
            else:
                assert OUTPUT_ONLY in behaviors(field), name
                assert not behaviors(field) & {REQUIRED, OPTIONAL}, name
