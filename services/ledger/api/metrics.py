"""The ledger's own Prometheus metrics, beside every server's call metrics."""

from __future__ import annotations

from prometheus_client import Counter

CHAIN_VERIFICATIONS = Counter(
    "sesame_ledger_chain_verifications_total",
    "VerifyChain runs, by result: intact, or mismatch (a hash chain or a projection disagrees).",
    ["result"],
)


def record_verification(intact: bool) -> None:
    CHAIN_VERIFICATIONS.labels("intact" if intact else "mismatch").inc()
