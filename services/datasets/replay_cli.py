"""`sesame-replay`: replays a Taiwan credit data set file into a running ledger.

    sesame-replay --csv train.csv --ledger 127.0.0.1:50051 [--batch-size 500] [--deadline-s 30]
                  [--without-consent]

Prints a progress bar (rows) on stderr and one summary line on stdout. Exits 0 when every row
is recorded, 1 with a message naming the cause when the file or the ledger stops the replay, and
2 for wrong arguments. Running it again with the same file changes nothing in the ledger (with
the same batch size the summary repeats the first run's counts, which the ledger stored; see
`services.datasets.replayer`).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

from services.common.channels import add_tls_arguments, tool_channel
from services.datasets.replayer import (
    BATCH_SIZE_DEFAULT,
    BATCH_SIZE_MAX,
    DEADLINE_S_DEFAULT,
    ReplayError,
    replay_csv,
)
from services.datasets.taiwan import TaiwanDataError

EXIT_FAILED = 1
# What shells report for a process stopped by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command; returns the process exit code."""
    arguments = _parser().parse_args(argv)
    try:
        with tool_channel(arguments.ledger, arguments) as channel:
            summary = replay_csv(
                arguments.csv,
                channel,
                batch_size=arguments.batch_size,
                deadline_s=arguments.deadline_s,
                progress=not arguments.no_progress,
                grant_consents=not arguments.without_consent,
            )
    except (TaiwanDataError, ReplayError, OSError) as error:
        print(f"sesame-replay: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        # Batches sent so far stay recorded, and a rerun sending them again changes nothing.
        print("sesame-replay: interrupted; running it again resumes safely", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(summary.line())
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sesame-replay",
        description="Replay the Taiwan credit data set into the ledger as partner statements.",
    )
    parser.add_argument(
        "--csv",
        required=True,
        metavar="PATH",
        help="the data set file (.csv, or .csv.gz read transparently)",
    )
    parser.add_argument("--ledger", required=True, metavar="HOST:PORT", help="the ledger's address")
    add_tls_arguments(parser)
    parser.add_argument(
        "--batch-size",
        type=_batch_size,
        default=BATCH_SIZE_DEFAULT,
        metavar="ROWS",
        help=f"rows per RecordPartnerStatements call, 1 to {BATCH_SIZE_MAX}"
        f" (default {BATCH_SIZE_DEFAULT})",
    )
    parser.add_argument(
        "--deadline-s",
        type=_positive_seconds,
        default=DEADLINE_S_DEFAULT,
        metavar="SECONDS",
        help=f"deadline of each call in seconds (default {DEADLINE_S_DEFAULT:g})",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not draw a progress bar")
    parser.add_argument(
        "--without-consent",
        action="store_true",
        help="replay the histories alone, without granting each user's consent to be scored"
        " (the score service then refuses to score them until they grant it)",
    )
    return parser


def _batch_size(text: str) -> int:
    size = int(text) if text.isdigit() else 0
    if not 1 <= size <= BATCH_SIZE_MAX:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {BATCH_SIZE_MAX}")
    return size


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return seconds
