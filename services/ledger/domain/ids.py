"""Identifiers: user ids, hold ids, request ids and the like."""

from __future__ import annotations

ID_LENGTH_MAX = 128
# Printable ASCII, space included: ids travel in logs, URLs and CSV files, where control
# characters and non-ASCII look-alikes would make two different ids read the same.
_PRINTABLE_ASCII = frozenset(chr(code) for code in range(0x20, 0x7F))


def id_problem(value: str) -> str | None:
    """Why `value` is not a valid identifier, or None when it is."""
    if not value:
        return "is required"
    if len(value) > ID_LENGTH_MAX:
        return f"must be at most {ID_LENGTH_MAX} characters"
    if not _PRINTABLE_ASCII.issuperset(value):
        return "must contain printable ASCII characters only"
    return None
