"""Scores a CSV of the Taiwan data set's schema through a fresh local suite: `make score-csv`.

`python -m services.suite.score_csv path/to/file.csv[.gz]`

It starts the suite the way `make run` does (each service as its own process, configured by
environment variables only) on free ports and a temporary SQLite ledger, replays the CSV into
the ledger through gRPC, asks the score service for every user's score through gRPC
(BatchGetScores, as of the end of the data set's last month), and measures the AUC of the
served probabilities against the label column. The figure must equal `make evaluate` on the
same file: both run the same features and the same model. The last two lines printed are

    RESULT auc_via_grpc <value>
    RESULT users_scored <n>
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import numpy as np
from google.protobuf import timestamp_pb2
from sesame.score.v1 import score_service_pb2, score_service_pb2_grpc
from sklearn.metrics import roc_auc_score

from services.common.grpc_errors import status_details
from services.datasets import taiwan
from services.datasets.replayer import replay_csv
from services.suite.launch import (
    HOST,
    SUITE,
    free_port,
    plaintext_suite,
    start_suite,
    stop_all,
    suite_environment,
)

BATCH_USERS = 1000
BATCH_DEADLINE_S = 60.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score a CSV through a fresh local suite.")
    parser.add_argument("csv", type=Path, help="a .csv or .csv.gz file with the data set's columns")
    arguments = parser.parse_args(argv)
    rows = list(taiwan.read_rows(arguments.csv))
    user_ids = [taiwan.user_id_for(row.client_id) for row in rows]
    labels = np.array([int(row.defaulted_next_month) for row in rows], dtype=np.int64)
    with tempfile.TemporaryDirectory(prefix="sesame-score-csv-") as directory:
        environment = _fresh_suite_environment(Path(directory))
        processes = start_suite(environment)
        try:
            ledger_address = _address(environment, "ledger")
            score_address = _address(environment, "score")
            with grpc.insecure_channel(ledger_address) as ledger_channel:
                print(replay_csv(arguments.csv, ledger_channel, progress=False).line(), flush=True)
            probabilities, thin_files = _served_probabilities(score_address, user_ids)
        finally:
            stop_all(processes)
    if thin_files:
        print(f"{thin_files} users had a thin file and no score; the AUC leaves them out")
    scored = ~np.isnan(probabilities)
    auc = float(roc_auc_score(labels[scored], probabilities[scored]))
    print(f"RESULT auc_via_grpc {auc:.6f}")
    print(f"RESULT users_scored {int(scored.sum())}")
    return 0


def _fresh_suite_environment(directory: Path) -> dict[str, str]:
    environment = dict(os.environ)
    for service in SUITE:
        environment[f"{service.environment_prefix}PORT"] = str(free_port())
    environment["SESAME_LEDGER_DATABASE_URL"] = f"sqlite:///{directory / 'ledger.db'}"
    environment["SESAME_LEDGER_CREATE_SCHEMA"] = "true"
    # One log line per RPC would bury the result lines under tens of thousands of others.
    for service in SUITE:
        environment.setdefault(f"{service.environment_prefix}LOG_LEVEL", "WARNING")
    # The suite's own addresses, pointing at the ports chosen above.
    for variable in (
        "SESAME_SCORE_LEDGER_ADDRESS",
        "SESAME_WAIVER_LEDGER_ADDRESS",
        "SESAME_WAIVER_SCORE_ADDRESS",
    ):
        environment.pop(variable, None)
    # A private suite on loopback, read by this tool alone: plaintext, asked for by name.
    return suite_environment({**environment, **plaintext_suite()})


def _address(environment: dict[str, str], name: str) -> str:
    service = next(service for service in SUITE if service.name == name)
    return f"{HOST}:{service.port(environment)}"


def _served_probabilities(score_address: str, user_ids: Sequence[str]) -> tuple[np.ndarray, int]:
    """Each user's served probability of default (NaN for a thin file), and the thin-file count."""
    as_of = timestamp_pb2.Timestamp()
    as_of.FromDatetime(taiwan.STATEMENTS_AS_OF)
    probabilities = np.full(len(user_ids), np.nan)
    thin_files = 0
    started = time.monotonic()
    with grpc.insecure_channel(score_address) as channel:
        stub = score_service_pb2_grpc.ScoreServiceStub(channel)
        for start, chunk in _chunks(user_ids, BATCH_USERS):
            request = score_service_pb2.BatchGetScoresRequest(user_ids=chunk, as_of_time=as_of)
            results = stub.BatchGetScores(request, timeout=BATCH_DEADLINE_S).results
            for offset, result in enumerate(results):
                if result.HasField("error"):
                    reason = status_details(result.error).reason
                    raise RuntimeError(f"{result.user_id}: no score ({reason})")
                if result.score.thin_file:
                    thin_files += 1
                    continue
                probabilities[start + offset] = result.score.probability_of_default
    print(f"scored {len(user_ids)} users in {time.monotonic() - started:.1f} s", flush=True)
    return probabilities, thin_files


def _chunks(items: Sequence[str], size: int) -> Iterator[tuple[int, list[str]]]:
    for start in range(0, len(items), size):
        yield start, list(items[start : start + size])


if __name__ == "__main__":
    sys.exit(main())
