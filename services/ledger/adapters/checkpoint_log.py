"""The checkpoint log: an append-only file of JSON lines, one checkpoint each, outside the
database.

It is the anchor: whoever can rewrite the database cannot take back what this file (or a copy
of it shipped elsewhere, on storage that keeps what was written) already holds. Each line is the
checkpoint's canonical JSON; lines are appended with O_APPEND and synced before the call returns.
A process that dies between the checkpoint's commit and its line leaves that one out of the log
(the journal still has it, and the next one is appended as usual).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from services.ledger.domain.canonical import canonical_json
from services.ledger.domain.checkpoints import Checkpoint
from services.ledger.domain.codec import DecodeError, from_plain, to_plain

# How far from the end the latest line is looked for; a checkpoint line is far shorter.
_TAIL_BYTES = 64 * 1024


class CheckpointLogError(ValueError):
    """A log that cannot be read, or whose latest line is no checkpoint."""


class CheckpointLogFile:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, checkpoint: Checkpoint) -> None:
        line = (canonical_json(to_plain(checkpoint)) + "\n").encode("ascii")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(descriptor, line)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def read_latest_checkpoint(path: str | Path) -> Checkpoint | None:
    """The last checkpoint in the log; None when the log is empty."""
    try:
        with open(path, "rb") as log_file:
            log_file.seek(0, os.SEEK_END)
            size = log_file.tell()
            log_file.seek(max(0, size - _TAIL_BYTES))
            tail = log_file.read()
    except OSError as error:
        raise CheckpointLogError(f"{path}: {error.strerror}") from error
    lines = [line for line in tail.split(b"\n") if line.strip()]
    if not lines:
        return None
    return parse_checkpoint(lines[-1].decode("ascii", errors="replace"))


def parse_checkpoint(text: str) -> Checkpoint:
    try:
        return from_plain(Checkpoint, json.loads(text))
    except (ValueError, DecodeError) as error:
        raise CheckpointLogError(f"not a checkpoint: {error}") from error
