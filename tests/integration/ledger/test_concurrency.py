"""Concurrent writers, in one ledger and across two ledgers sharing a database (as two processes
would): capacity holds, global sequences stay gap-free, chains stay intact."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from services.common.errors import FailedPrecondition
from services.common.money import Money
from services.ledger.app import build_ledger
from services.ledger.domain import commands

THREADS_PER_LEDGER = 6
ATTEMPTS_PER_THREAD = 4


@pytest.fixture
def two_ledgers(ledger, ledger_settings, clock):
    """The test's ledger, and a second one on the same database that runs three write
    transactions at once (as a tuned production process might)."""
    concurrent = ledger_settings.model_copy(update={"write_concurrency": 3})
    other = build_ledger(concurrent, clock=clock)
    yield [ledger.service, other.service]
    other.close()


def run_concurrently(work_by_thread):
    start = threading.Barrier(len(work_by_thread))
    failures: list[BaseException] = []

    def run(work):
        start.wait()
        try:
            work()
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=run, args=(work,)) for work in work_by_thread]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_concurrent_holds_never_exceed_capacity(two_ledgers):
    first = two_ledgers[0]
    first.set_waiver_capacity(commands.SetWaiverCapacity("capacity", "user-1", Money("CNY", 1_000)))
    outcomes: Counter[str] = Counter()

    def place_holds(service, thread_number):
        def work():
            for attempt in range(ATTEMPTS_PER_THREAD):
                command = commands.PlaceHold(
                    request_id=f"hold-{id(service)}-{thread_number}-{attempt}",
                    user_id="user-1",
                    amount=Money("CNY", 100),
                    expires_in_us=3_600_000_000,
                )
                try:
                    service.place_hold(command)
                    outcomes["placed"] += 1
                except FailedPrecondition as refusal:
                    outcomes[refusal.reason] += 1

        return work

    run_concurrently(
        [
            place_holds(service, thread_number)
            for service in two_ledgers
            for thread_number in range(THREADS_PER_LEDGER)
        ]
    )

    attempts = len(two_ledgers) * THREADS_PER_LEDGER * ATTEMPTS_PER_THREAD
    assert outcomes == {"placed": 10, "INSUFFICIENT_CAPACITY": attempts - 10}
    summary = first.get_account_summary("user-1")
    assert (summary.held_minor, summary.open_hold_count) == (1_000, 10)
    assert first.verify_chain().intact


def test_concurrent_writers_keep_the_global_sequence_gap_free(two_ledgers):
    def set_capacities(service, thread_number):
        def work():
            for attempt in range(ATTEMPTS_PER_THREAD):
                service.set_waiver_capacity(
                    commands.SetWaiverCapacity(
                        request_id=f"capacity-{id(service)}-{thread_number}-{attempt}",
                        user_id=f"user-{thread_number % 3}",
                        capacity=Money("CNY", attempt),
                    )
                )

        return work

    run_concurrently(
        [
            set_capacities(service, thread_number)
            for service in two_ledgers
            for thread_number in range(THREADS_PER_LEDGER)
        ]
    )

    entries = two_ledgers[1].list_entries(page_size=1000).entries
    expected = len(two_ledgers) * THREADS_PER_LEDGER * ATTEMPTS_PER_THREAD
    assert [typed.entry.global_sequence for typed in entries] == list(range(1, expected + 1))
    report = two_ledgers[0].verify_chain()
    assert report.intact
    assert report.entries_checked == expected
