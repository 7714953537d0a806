"""One client process of the ledger concurrency test (run as a script, not collected by pytest).

    python ledger_load_client.py CONFIG.json RESULT.json

Runs `threads` threads against the ledger at `address`. Every thread plays the same rounds; in
round r all threads work on user `users[r % len(users)]`, and thread g sends the PlaceHold of
slot k = g % slots with the request id "place-r-k", so several threads (in several processes)
send each placement identically and at the same moment, and the slots of a round race for the
user's capacity. A thread whose placement succeeded then resolves the hold, racing the other
threads of its slot:

  slot 0: captures all of it with an obligation, under the slot's shared request id;
  slot 1: captures part under the shared id, and a different part under its own request id;
  slot 2: releases it (fulfilled) under the shared id, and captures part under its own id;
  slot 3: captures a thread-specific amount under its own request id only;
  last slot: leaves it alone; it expires after `short_expiry_s` and the sweeper journals it.

UNAVAILABLE and DEADLINE_EXCEEDED are retried with the same request id, a bounded number of
times. Every call's request id, target, outcome and serialized response go to RESULT.json.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from typing import Any

import grpc
from google.protobuf import duration_pb2, timestamp_pb2
from sesame.ledger.v1 import ledger_service_pb2 as pb, ledger_service_pb2_grpc
from sesame.type.v1 import money_pb2

from services.common.grpc_errors import error_details

CALL_TIMEOUT_S = 15.0
ATTEMPTS_MAX = 20
RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
)
# Fixed, so that every thread sending a shared capture sends exactly the same request.
OBLIGATION_DUE_AT = timestamp_pb2.Timestamp(seconds=1_900_000_000)


def main(config_path: str, result_path: str) -> int:
    with open(config_path) as config_file:
        config = json.load(config_file)
    records: list[dict[str, Any]] = []
    lock = threading.Lock()
    channel = grpc.insecure_channel(config["address"], options=CHANNEL_OPTIONS)
    stub = ledger_service_pb2_grpc.LedgerServiceStub(channel)
    first_thread = config["process_index"] * config["threads"]
    threads = [
        threading.Thread(
            target=_run_thread, args=(stub, config, first_thread + index, records, lock)
        )
        for index in range(config["threads"])
    ]
    # All processes start their load at the same moment, so their first requests collide.
    time.sleep(max(0.0, config["start_at"] - time.time()))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(config["deadline_s"] + CALL_TIMEOUT_S * 2)
    channel.close()
    alive = [thread.name for thread in threads if thread.is_alive()]
    with open(result_path, "w") as result_file:
        json.dump({"records": records, "threads_still_running": alive}, result_file)
    return 0


def _money(amount_minor: int, currency: str) -> money_pb2.Money:
    return money_pb2.Money(currency_code=currency, amount_minor=amount_minor)


def _call(method: Any, request: Any, deadline: float) -> dict[str, Any]:
    retries = 0
    for _ in range(ATTEMPTS_MAX):
        try:
            response = method(request, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            code = error.code()
            if code in RETRIED and time.monotonic() < deadline:
                retries += 1
                time.sleep(min(1.0, 0.05 * 2**retries) * random.random())
                continue
            return {
                "ok": False,
                "code": code.name,
                "reason": error_details(error).reason,
                "retries": retries,
            }
        return {
            "ok": True,
            "response": response.SerializeToString(deterministic=True).hex(),
            "retries": retries,
        }
    return {"ok": False, "code": "GAVE_UP", "reason": "", "retries": retries}


def _run_thread(
    stub: Any,
    config: dict[str, Any],
    thread_number: int,
    records: list[dict[str, Any]],
    lock: threading.Lock,
) -> None:
    rng = random.Random(config["seed"] * 1000 + thread_number)
    deadline = time.monotonic() + config["deadline_s"]
    slots = config["slots"]
    currency = config["currency"]
    amount = config["hold_amount"]
    slot = thread_number % slots

    def record(entry: dict[str, Any]) -> None:
        with lock:
            records.append(entry | {"thread": thread_number})

    for round_number in range(config["rounds"]):
        if time.monotonic() > deadline:
            record({"kind": "deadline", "round": round_number})
            return
        user_id = config["users"][round_number % len(config["users"])]
        short = slot == slots - 1
        expires_in_s = config["short_expiry_s"] if short else config["long_expiry_s"]
        place = pb.PlaceHoldRequest(
            request_id=f"place-{round_number}-{slot}",
            user_id=user_id,
            amount=_money(amount, currency),
            expires_in=duration_pb2.Duration(seconds=expires_in_s),
            reference=f"slot-{round_number}-{slot}",
        )
        outcome = _call(stub.PlaceHold, place, deadline)
        base = {"round": round_number, "slot": slot, "user_id": user_id}
        record(base | {"kind": "place", "request_id": place.request_id, "amount": amount} | outcome)
        if not outcome["ok"] or short:
            continue
        hold_id = pb.PlaceHoldResponse.FromString(bytes.fromhex(outcome["response"])).hold.hold_id
        shared = f"{round_number}-{slot}"
        own = f"{round_number}-{slot}-thread-{thread_number}"
        attempts: list[tuple[str, str, int, bool]] = []
        if slot == 0:
            attempts = [("capture", f"capture-{shared}", amount, True)]
        elif slot == 1:
            attempts = [
                ("capture", f"capture-{shared}", amount // 3, False),
                ("capture", f"capture-{own}", 2 * amount // 3, False),
            ]
        elif slot == 2:
            attempts = [
                ("release", f"release-{shared}", 0, True),
                ("capture", f"capture-{own}", amount // 6, False),
            ]
        else:
            attempts = [("capture", f"capture-{own}", 1 + thread_number % amount, False)]
        rng.shuffle(attempts)
        for kind, request_id, capture_minor, flag in attempts:
            detail = base | {"kind": kind, "request_id": request_id, "hold_id": hold_id}
            if kind == "release":
                request: Any = pb.ReleaseHoldRequest(
                    request_id=request_id, hold_id=hold_id, fulfilled=flag
                )
                outcome = _call(stub.ReleaseHold, request, deadline)
                record(detail | {"fulfilled": flag} | outcome)
                continue
            request = pb.CaptureHoldRequest(
                request_id=request_id, hold_id=hold_id, amount=_money(capture_minor, currency)
            )
            if flag:
                request.obligation.due_time.CopyFrom(OBLIGATION_DUE_AT)
                request.obligation.purpose = "rental fee"
            outcome = _call(stub.CaptureHold, request, deadline)
            record(detail | {"amount": capture_minor, "with_obligation": flag} | outcome)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
