"""Many client processes against the ledger: capacity races, duplicate captures and identical
retries, on SQLite and on PostgreSQL.

Two ledger processes serve one database; four client processes of four threads each (two on
each ledger; see ledger_load_client.py for the workload) hammer a few users whose capacity fits
three holds at once: placements race for the last capacity, several threads capture or release
the same hold under the same and under different request ids, and every placement is sent
identically by several threads at the same moment. Then, from the clients' own records and
from the journal:

  * every request id got one answer, the same for every thread that sent it;
  * each request id's effect is in the journal exactly once if it succeeded, never if refused;
  * replaying the journal in global order, no placement ever took a user above the capacity;
  * each hold was resolved exactly once: one capture or release won, the others were refused;
  * per user, placed = captured + released + expired + still held, from the clients' answers
    and from the journal alike, and the account summary agrees;
  * every hash chain and projection verifies.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from sesame.ledger.v1 import ledger_service_pb2 as pb
from sesame.type.v1 import money_pb2

WORKER = Path(__file__).resolve().parent / "ledger_load_client.py"
PROCESSES = 4
THREADS_PER_PROCESS = 4
ROUNDS = 12
SLOTS = 5
USERS = ["racer-a", "racer-b", "racer-c"]
CURRENCY = "CNY"
UNIT = 100
CAPACITY = 10 * UNIT
HOLD = 3 * UNIT
SHORT_EXPIRY_S = 1
LONG_EXPIRY_S = 3600
LOAD_DEADLINE_S = 60
START_DELAY_S = 3.0
WAIT_FOR_SWEEP_S = 20.0


def _decode(record: dict[str, Any]) -> Any:
    message = {
        "place": pb.PlaceHoldResponse,
        "capture": pb.CaptureHoldResponse,
        "release": pb.ReleaseHoldResponse,
    }[record["kind"]]
    return message.FromString(bytes.fromhex(record["response"]))


def _run_clients(
    addresses: list[str], tmp_path: Path, environment: dict[str, str]
) -> list[dict[str, Any]]:
    start_at = time.time() + START_DELAY_S
    processes = []
    for index in range(PROCESSES):
        config = {
            "address": addresses[index % len(addresses)],
            "process_index": index,
            "threads": THREADS_PER_PROCESS,
            "rounds": ROUNDS,
            "slots": SLOTS,
            "users": USERS,
            "currency": CURRENCY,
            "hold_amount": HOLD,
            "short_expiry_s": SHORT_EXPIRY_S,
            "long_expiry_s": LONG_EXPIRY_S,
            "deadline_s": LOAD_DEADLINE_S,
            "start_at": start_at,
            "seed": index,
        }
        config_path = tmp_path / f"client-{index}.json"
        config_path.write_text(json.dumps(config))
        result_path = tmp_path / f"client-{index}-result.json"
        output = (tmp_path / f"client-{index}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, str(WORKER), str(config_path), str(result_path)],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        processes.append((process, result_path, output))
    records: list[dict[str, Any]] = []
    for process, result_path, output in processes:
        try:
            process.wait(START_DELAY_S + LOAD_DEADLINE_S + 60)
        except subprocess.TimeoutExpired:
            for other, _, _ in processes:
                other.kill()
            raise AssertionError("a client process did not finish in time") from None
        finally:
            output.close()
        log = Path(output.name).read_text(errors="replace")
        assert process.returncode == 0, f"client failed:\n{log[-3000:]}"
        result = json.loads(result_path.read_text())
        assert not result["threads_still_running"], "a client thread did not finish"
        records.extend(result["records"])
    return records


def test_concurrent_clients_never_breach_capacity_nor_apply_anything_twice(
    resilience_database_url: str,
    start_ledger: Any,
    ledger_connect: Any,
    ledger_reading: Any,
    tmp_path: Path,
) -> None:
    # Two ledger processes on one database, each with its own expiry sweeper, so that the races
    # are decided by the database's locking and not only by whatever one process serialises.
    ledgers = [start_ledger(resilience_database_url, sweep_interval_s="0.5") for _ in range(2)]
    channel, stub = ledger_connect(ledgers[0].address)
    with channel:
        for user_id in USERS:
            stub.SetWaiverCapacity(
                pb.SetWaiverCapacityRequest(
                    request_id=f"capacity-{user_id}",
                    user_id=user_id,
                    capacity=money_pb2.Money(currency_code=CURRENCY, amount_minor=CAPACITY),
                    reason="concurrency test",
                ),
                timeout=30,
            )

        addresses = [ledger.address for ledger in ledgers]
        records = _run_clients(addresses, tmp_path, ledger_reading.environment())

        assert not [r for r in records if r["kind"] == "deadline"], "the load ran out of time"
        # Every short hold has expired by now; wait for the sweeper to journal the expiries
        # (and sweep once more ourselves, bounded).
        deadline = time.monotonic() + WAIT_FOR_SWEEP_S
        time.sleep(SHORT_EXPIRY_S + 0.1)
        while stub.SweepExpiredHolds(pb.SweepExpiredHoldsRequest(), timeout=30).expired_count:
            assert time.monotonic() < deadline, "expired holds kept appearing"
        _check(stub, records, ledger_reading)


def _check(stub: Any, records: list[dict[str, Any]], reading: Any) -> None:
    by_request: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_request[record["request_id"]].append(record)

    # One answer per request id, the same for everyone who sent it; no unexpected error.
    answers: dict[str, dict[str, Any]] = {}
    for request_id, sent in by_request.items():
        distinct = {(r["ok"], r.get("response"), r.get("code"), r.get("reason")) for r in sent}
        assert len(distinct) == 1, f"{request_id} got different answers: {distinct}"
        answer = sent[0]
        if not answer["ok"]:
            expected = (
                "INSUFFICIENT_CAPACITY" if answer["kind"] == "place" else "HOLD_ALREADY_RESOLVED"
            )
            assert (answer["code"], answer["reason"]) == ("FAILED_PRECONDITION", expected), (
                request_id,
                answer,
            )
        answers[request_id] = answer
    senders = Counter(
        len(sent) for request_id, sent in by_request.items() if request_id.startswith("place-")
    )
    assert max(senders) > 1, "no placement was sent by several threads at once"

    entries = reading.journal(stub)
    entries_by_request: dict[str, list[pb.Entry]] = defaultdict(list)
    for entry in entries:
        entries_by_request[entry.request_id].append(entry)
    unexplained = [
        request_id
        for request_id in entries_by_request
        if request_id not in answers and not request_id.startswith(("capacity-", "expiry:"))
    ]
    assert not unexplained, f"journal entries from requests nobody sent: {unexplained}"

    # Each request's effect, exactly once if it succeeded, never if it was refused.
    holds: dict[str, dict[str, Any]] = {}
    for request_id, answer in answers.items():
        written = sorted(pb.EntryType.Name(e.type) for e in entries_by_request.get(request_id, []))
        if not answer["ok"]:
            assert written == [], f"refused {request_id} wrote {written}"
            continue
        response = _decode(answer)
        if answer["kind"] == "place":
            assert written == ["ENTRY_TYPE_HOLD_PLACED"], (request_id, written)
            fact = reading.payload(entries_by_request[request_id][0])
            assert fact["hold_id"] == response.hold.hold_id
            assert fact["amount_minor"] == HOLD == response.hold.amount.amount_minor
            assert entries_by_request[request_id][0].user_id == answer["user_id"]
            holds[response.hold.hold_id] = {
                "user_id": answer["user_id"],
                "amount": HOLD,
                "slot": answer["slot"],
                "winners": [],
            }
        elif answer["kind"] == "capture":
            expected = ["ENTRY_TYPE_HOLD_CAPTURED"]
            if answer["with_obligation"]:
                expected = ["ENTRY_TYPE_HOLD_CAPTURED", "ENTRY_TYPE_OBLIGATION_CREATED"]
            assert written == expected, (request_id, written)
            assert response.hold.captured_amount.amount_minor == answer["amount"]
        else:
            assert written == ["ENTRY_TYPE_HOLD_RELEASED"], (request_id, written)
    for answer in answers.values():
        if answer["ok"] and answer["kind"] != "place":
            holds[answer["hold_id"]]["winners"].append(answer)

    # Each hold resolved exactly once: one winning capture or release, or (last slot) expiry.
    resolutions: Counter[str] = Counter()
    expired: set[str] = set()
    for entry in entries:
        if entry.type in (
            pb.ENTRY_TYPE_HOLD_CAPTURED,
            pb.ENTRY_TYPE_HOLD_RELEASED,
            pb.ENTRY_TYPE_HOLD_EXPIRED,
        ):
            resolutions[reading.payload(entry)["hold_id"]] += 1
        if entry.type == pb.ENTRY_TYPE_HOLD_EXPIRED:
            expired.add(reading.payload(entry)["hold_id"])
    placed_in_journal = {
        reading.payload(e)["hold_id"] for e in entries if e.type == pb.ENTRY_TYPE_HOLD_PLACED
    }
    assert placed_in_journal == set(holds), "the journal's holds differ from those acknowledged"
    for hold_id, hold in holds.items():
        assert resolutions[hold_id] == 1, f"{hold_id} resolved {resolutions[hold_id]} times"
        if hold["slot"] == SLOTS - 1:
            assert hold["winners"] == [] and hold_id in expired
        else:
            assert len(hold["winners"]) == 1, f"{hold_id}: {len(hold['winners'])} winners"
            assert hold_id not in expired
        final = stub.GetHold(pb.GetHoldRequest(hold_id=hold_id), timeout=30).hold
        if hold["winners"]:
            winner = hold["winners"][0]
            if winner["kind"] == "capture":
                assert final.state == pb.HOLD_STATE_CAPTURED
                assert final.captured_amount.amount_minor == winner["amount"]
            else:
                assert final.state == pb.HOLD_STATE_RELEASED and final.fulfilled
        else:
            assert final.state == pb.HOLD_STATE_EXPIRED

    # No placement ever took a user above the capacity (three holds of three units in ten).
    most_open = reading.placements_within_capacity(entries)
    assert all(count <= CAPACITY // HOLD for count in most_open.values()), most_open

    # Conservation, per user: from the clients' answers and from the journal.
    for user_id in USERS:
        mine = {h: hold for h, hold in holds.items() if hold["user_id"] == user_id}
        placed = sum(hold["amount"] for hold in mine.values())
        captured = released = outstanding = fulfilled = 0
        for hold in mine.values():
            if not hold["winners"]:
                released += hold["amount"]
                continue
            winner = hold["winners"][0]
            if winner["kind"] == "capture":
                captured += winner["amount"]
                released += hold["amount"] - winner["amount"]
                outstanding += winner["amount"] if winner["with_obligation"] else 0
            else:
                released += hold["amount"]
                fulfilled += 1
        summary = stub.GetAccountSummary(pb.GetAccountSummaryRequest(user_id=user_id), timeout=30)
        account = summary.account
        held = account.held.amount_minor
        assert placed == captured + released + held, (user_id, placed, captured, released, held)
        assert held == 0 and account.open_hold_count == 0
        assert account.outstanding.amount_minor == outstanding
        assert account.outcomes.fulfilled == fulfilled
        assert account.waiver_capacity.amount_minor == CAPACITY

        journal_placed = journal_captured = journal_released = 0
        user_entries = [e for e in entries if e.user_id == user_id]
        amounts = {}
        for entry in user_entries:
            fact = reading.payload(entry)
            if entry.type == pb.ENTRY_TYPE_HOLD_PLACED:
                journal_placed += fact["amount_minor"]
                amounts[fact["hold_id"]] = fact["amount_minor"]
            elif entry.type == pb.ENTRY_TYPE_HOLD_CAPTURED:
                journal_captured += fact["captured_minor"]
                journal_released += fact["released_minor"]
            elif entry.type in (pb.ENTRY_TYPE_HOLD_RELEASED, pb.ENTRY_TYPE_HOLD_EXPIRED):
                journal_released += amounts[fact["hold_id"]]
        assert (journal_placed, journal_captured, journal_released) == (placed, captured, released)
        assert account.last_user_sequence == len(user_entries)

    # The races really happened: placements lost to capacity, resolutions lost to others.
    outcomes = Counter((a["kind"], a["ok"]) for a in answers.values())
    assert outcomes["place", False] > 0 and outcomes["capture", False] > 0, outcomes

    report = reading.chains_verify(stub, USERS)
    assert report.entries_checked == len(entries)
