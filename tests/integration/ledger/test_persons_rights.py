"""A person's rights through the gRPC API, on SQLite and PostgreSQL: consent to be scored,
granted and withdrawn as journaled facts, and a statement of the person's own attached to a
negative record, shown wherever the record is."""

from __future__ import annotations

import grpc
import pytest
from sesame.ledger.v1 import ledger_service_pb2 as pb

from .conftest import LedgerClient


def record_consent(
    client: LedgerClient, user_id: str, state: int, request_id: str | None = None
) -> pb.Consent:
    request = pb.RecordConsentRequest(
        request_id=request_id or client.new_request_id(), user_id=user_id, state=state
    )
    return client.call("RecordConsent", request).consent


def attach_request(
    client: LedgerClient, user_id: str, obligation_id: str, text: str
) -> pb.AttachStatementRequest:
    return pb.AttachStatementRequest(
        request_id=client.new_request_id(),
        user_id=user_id,
        obligation_id=obligation_id,
        text=text,
    )


def attach(client: LedgerClient, user_id: str, obligation_id: str, text: str) -> pb.Obligation:
    request = attach_request(client, user_id, obligation_id, text)
    return client.call("AttachStatement", request).obligation


def user_entries(client: LedgerClient, user_id: str) -> list[pb.Entry]:
    return list(
        client.call("ListEntries", pb.ListEntriesRequest(user_id=user_id, page_size=1000)).entries
    )


def history(client: LedgerClient, user_id: str, **fields: object) -> pb.GetCreditHistoryResponse:
    return client.call("GetCreditHistory", pb.GetCreditHistoryRequest(user_id=user_id, **fields))


def defaulted_obligation(client: LedgerClient, user_id: str) -> pb.Obligation:
    obligation = client.create_obligation(user_id, 300, due_in_s=-86_400)
    return client.close_obligation(obligation.obligation_id, pb.OBLIGATION_OUTCOME_DEFAULTED)


# ----------------------------------------------------------------------------------------------
# Consent


def test_a_user_without_a_consent_reads_as_never_given(client):
    summary = client.summary("user-1")

    assert summary.consent.state == pb.CONSENT_STATE_NOT_GIVEN
    assert not summary.consent.HasField("since_time")
    assert history(client, "user-1").consent.state == pb.CONSENT_STATE_NOT_GIVEN


def test_consent_granted_then_withdrawn_is_journaled_and_shown_with_its_time(client):
    granted = record_consent(client, "user-1", pb.CONSENT_STATE_GRANTED)
    granted_at = client.clock.now_us()
    client.clock.advance(seconds=60)
    withdrawn = record_consent(client, "user-1", pb.CONSENT_STATE_WITHDRAWN)

    assert granted.state == pb.CONSENT_STATE_GRANTED
    assert granted.since_time.ToMicroseconds() == granted_at
    assert withdrawn.state == pb.CONSENT_STATE_WITHDRAWN
    assert withdrawn.since_time.ToMicroseconds() == granted_at + 60_000_000
    assert client.summary("user-1").consent == withdrawn
    entries = user_entries(client, "user-1")
    assert [entry.type for entry in entries] == [
        pb.ENTRY_TYPE_CONSENT_GRANTED,
        pb.ENTRY_TYPE_CONSENT_WITHDRAWN,
    ]
    assert entries[0].consent_granted.grant_time.ToMicroseconds() == granted_at
    assert entries[1].consent_withdrawn.withdraw_time == withdrawn.since_time
    assert client.verify("user-1").intact


def test_the_history_answers_the_consent_now_whatever_its_as_of(client):
    record_consent(client, "user-1", pb.CONSENT_STATE_GRANTED)
    client.clock.advance(seconds=60)
    record_consent(client, "user-1", pb.CONSENT_STATE_WITHDRAWN)

    long_ago = client.timestamp_in(-365 * 86_400)
    read = history(client, "user-1", as_of_time=long_ago)

    assert read.consent.state == pb.CONSENT_STATE_WITHDRAWN


def test_granting_consent_already_granted_journals_nothing_and_keeps_its_time(client):
    first = record_consent(client, "user-1", pb.CONSENT_STATE_GRANTED)
    client.clock.advance(seconds=60)
    again = record_consent(client, "user-1", pb.CONSENT_STATE_GRANTED)
    never_given = record_consent(client, "user-2", pb.CONSENT_STATE_WITHDRAWN)

    assert again == first
    assert never_given.state == pb.CONSENT_STATE_NOT_GIVEN
    assert len(user_entries(client, "user-1")) == 1
    assert user_entries(client, "user-2") == []


def test_a_retried_consent_request_is_answered_as_the_first_time(client):
    first = record_consent(client, "user-1", pb.CONSENT_STATE_GRANTED, request_id="consent-1")
    record_consent(client, "user-1", pb.CONSENT_STATE_WITHDRAWN)

    retried = record_consent(client, "user-1", pb.CONSENT_STATE_GRANTED, request_id="consent-1")

    assert retried == first
    assert client.summary("user-1").consent.state == pb.CONSENT_STATE_WITHDRAWN
    code, reason, _ = client.rejection(
        lambda: record_consent(client, "user-1", pb.CONSENT_STATE_WITHDRAWN, request_id="consent-1")
    )
    assert (code, reason) == (grpc.StatusCode.ABORTED, "REQUEST_ID_REUSED")


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"state": pb.CONSENT_STATE_UNSPECIFIED}, "state", "FIELD_REQUIRED"),
        ({"state": pb.CONSENT_STATE_NOT_GIVEN}, "state", "ENUM_VALUE_INVALID"),
        ({"state": 99}, "state", "ENUM_VALUE_INVALID"),
        ({"user_id": ""}, "user_id", "FIELD_REQUIRED"),
        ({"user_id": "$ledger"}, "user_id", "ID_INVALID"),
        ({"request_id": ""}, "request_id", "REQUEST_ID_REQUIRED"),
    ],
)
def test_a_bad_consent_request_names_the_field_and_writes_nothing(client, changes, field, reason):
    request = pb.RecordConsentRequest(
        request_id="consent-bad", user_id="user-1", state=pb.CONSENT_STATE_GRANTED
    )
    for name, value in changes.items():
        setattr(request, name, value)

    code, first_reason, fields = client.rejection(lambda: client.call("RecordConsent", request))

    assert (code, first_reason, fields) == (grpc.StatusCode.INVALID_ARGUMENT, reason, (field,))
    assert client.entry_count() == 0
    assert client.stored_request_count() == 0


def test_both_request_fields_of_a_bad_consent_are_named_at_once(client):
    request = pb.RecordConsentRequest(request_id="", user_id="", state=42)

    code, _, fields = client.rejection(lambda: client.call("RecordConsent", request))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(fields) == {"request_id", "user_id", "state"}


# ----------------------------------------------------------------------------------------------
# A statement on a negative record


@pytest.mark.parametrize(
    ("outcome", "days_late"),
    [(pb.OBLIGATION_OUTCOME_DEFAULTED, 0), (pb.OBLIGATION_OUTCOME_LATE, 12)],
)
def test_a_statement_on_a_late_or_defaulted_obligation_is_shown_wherever_it_is(
    client, outcome, days_late
):
    obligation = client.create_obligation("user-1", 300, due_in_s=-86_400)
    if outcome == pb.OBLIGATION_OUTCOME_LATE:
        client.pay(obligation.obligation_id, 300)
    client.close_obligation(obligation.obligation_id, outcome, days_late=days_late)

    attached = attach(client, "user-1", obligation.obligation_id, "  I was in hospital.  ")

    statement = attached.attached_statement
    assert statement.text == "I was in hospital."
    assert statement.attach_time.ToMicroseconds() == client.clock.now_us()
    read = client.call(
        "GetObligation", pb.GetObligationRequest(obligation_id=obligation.obligation_id)
    ).obligation
    assert read.attached_statement == statement
    (listed,) = history(client, "user-1").obligations
    assert listed.attached_statement == statement
    last = user_entries(client, "user-1")[-1]
    assert last.type == pb.ENTRY_TYPE_STATEMENT_ATTACHED
    assert last.statement_attached.obligation_id == obligation.obligation_id
    assert last.statement_attached.statement == statement
    assert client.verify("user-1").intact


def test_a_later_statement_replaces_the_shown_one_and_the_journal_keeps_both(client):
    obligation = defaulted_obligation(client, "user-1")
    attach(client, "user-1", obligation.obligation_id, "First words.")
    client.clock.advance(seconds=60)

    later = attach(client, "user-1", obligation.obligation_id, "Better words.")

    assert later.attached_statement.text == "Better words."
    (listed,) = history(client, "user-1").obligations
    assert listed.attached_statement.text == "Better words."
    texts = [
        entry.statement_attached.statement.text
        for entry in user_entries(client, "user-1")
        if entry.type == pb.ENTRY_TYPE_STATEMENT_ATTACHED
    ]
    assert texts == ["First words.", "Better words."]
    assert client.verify().intact


def test_a_history_as_of_before_the_record_closed_shows_no_statement(client):
    obligation = client.create_obligation("user-1", 300, due_in_s=-86_400)
    before = client.timestamp_in(0)
    client.clock.advance(seconds=1)
    client.close_obligation(obligation.obligation_id, pb.OBLIGATION_OUTCOME_DEFAULTED)
    attach(client, "user-1", obligation.obligation_id, "Words.")

    (then,) = history(client, "user-1", as_of_time=before).obligations

    assert then.state == pb.OBLIGATION_STATE_OPEN
    assert not then.HasField("attached_statement")


@pytest.mark.parametrize("state", ["open", "on time"])
def test_a_record_that_is_not_negative_takes_no_statement(client, state):
    obligation = client.create_obligation("user-1", 300)
    if state == "on time":
        client.pay(obligation.obligation_id, 300)
        client.close_obligation(obligation.obligation_id, pb.OBLIGATION_OUTCOME_ON_TIME)
    entries_before = client.entry_count()

    code, reason, _ = client.rejection(
        lambda: attach(client, "user-1", obligation.obligation_id, "Words.")
    )

    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "RECORD_NOT_NEGATIVE")
    assert client.entry_count() == entries_before


def test_an_unknown_record_and_another_users_record_are_not_found_alike(client):
    obligation = defaulted_obligation(client, "user-1")
    entries_before = client.entry_count()

    unknown = client.rejection(lambda: attach(client, "user-1", "no-such-obligation", "Words."))
    someone_elses = client.rejection(
        lambda: attach(client, "user-2", obligation.obligation_id, "Words.")
    )

    assert unknown == someone_elses == (grpc.StatusCode.NOT_FOUND, "OBLIGATION_NOT_FOUND", ())
    assert client.entry_count() == entries_before
    assert not client.call(
        "GetObligation", pb.GetObligationRequest(obligation_id=obligation.obligation_id)
    ).obligation.HasField("attached_statement")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "FIELD_REQUIRED"),
        ("   \t ", "FIELD_REQUIRED"),
        ("x" * 501, "TEXT_TOO_LONG"),
        ("first line\nsecond line", "TEXT_INVALID"),
        ("nul \x00 inside", "TEXT_INVALID"),
    ],
    ids=["empty", "white space", "501 characters", "a line break", "a NUL"],
)
def test_a_bad_statement_text_names_the_field_and_writes_nothing(client, text, reason):
    obligation = defaulted_obligation(client, "user-1")
    entries_before, requests_before = client.entry_count(), client.stored_request_count()

    code, first_reason, fields = client.rejection(
        lambda: attach(client, "user-1", obligation.obligation_id, text)
    )

    assert (code, first_reason, fields) == (grpc.StatusCode.INVALID_ARGUMENT, reason, ("text",))
    assert (client.entry_count(), client.stored_request_count()) == (
        entries_before,
        requests_before,
    )


def test_a_statement_of_500_characters_is_taken_whole(client):
    obligation = defaulted_obligation(client, "user-1")

    attached = attach(client, "user-1", obligation.obligation_id, "字" * 500)

    assert attached.attached_statement.text == "字" * 500


def test_every_bad_field_of_a_statement_request_is_named_at_once(client):
    request = pb.AttachStatementRequest(request_id="", user_id="", obligation_id="", text="")

    code, _, fields = client.rejection(lambda: client.call("AttachStatement", request))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(fields) == {"request_id", "user_id", "obligation_id", "text"}


def test_a_record_older_than_five_years_keeps_its_statement_in_the_journal_and_the_history(
    client,
):
    # The score drops a negative record five years after its due time (the score's
    # record_age); the ledger never does: the record and the person's words on it stay.
    six_years_s = 6 * 365 * 86_400
    obligation = client.create_obligation("user-1", 300, due_in_s=-six_years_s)
    client.close_obligation(obligation.obligation_id, pb.OBLIGATION_OUTCOME_DEFAULTED)
    attach(client, "user-1", obligation.obligation_id, "That was long ago.")

    (listed,) = history(client, "user-1").obligations

    assert listed.outcome == pb.OBLIGATION_OUTCOME_DEFAULTED
    assert listed.attached_statement.text == "That was long ago."
