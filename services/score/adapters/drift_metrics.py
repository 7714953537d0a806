"""Drift as Prometheus gauges, served on the metrics port. With worker processes each worker
watches the users it scores; the metrics port serves the largest index over the live workers."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Gauge

FEATURE_PSI = Gauge(
    "sesame_score_feature_psi",
    "Population stability index of a feature over the last scored users, against the serving "
    "model's training rows (the model card's drift_reference gives the alert threshold).",
    ["feature"],
    multiprocess_mode="livemax",
)
SCORE_PSI = Gauge(
    "sesame_score_psi",
    "Population stability index of the score over the last scored users, against the serving "
    "model's training rows.",
    multiprocess_mode="livemax",
)
WINDOW_ROWS = Gauge(
    "sesame_score_drift_window_rows",
    "How many scored users the drift indices rest on.",
    multiprocess_mode="livemax",
)


class PrometheusDriftRecorder:
    def record(self, feature_indices: Mapping[str, float], score_index: float, rows: int) -> None:
        for feature, index in feature_indices.items():
            FEATURE_PSI.labels(feature=feature).set(index)
        SCORE_PSI.set(score_index)
        WINDOW_ROWS.set(rows)
