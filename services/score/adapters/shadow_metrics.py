"""The shadow model's comparisons as Prometheus metrics, served on the metrics port."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# The scores at which decisions usually change (the waiver policies' thresholds live there).
DECISION_THRESHOLDS = (550, 600, 650, 700)

SHADOW_COMPARISONS = Counter(
    "sesame_score_shadow_comparisons_total",
    "User scores offered to the shadow model, by outcome: compared, or dropped (shadow behind).",
    ["outcome"],
)
SHADOW_SCORE_DIFFERENCE = Histogram(
    "sesame_score_shadow_score_difference_points",
    "The shadow model's score minus the served score, for the same features.",
    buckets=(-100, -50, -20, -10, -5, -1, 0, 1, 5, 10, 20, 50, 100),
)
SHADOW_THRESHOLD_CROSSINGS = Counter(
    "sesame_score_shadow_threshold_crossings_total",
    "Comparisons where the served and shadow scores fall on different sides of a threshold.",
    ["threshold"],
)


class PrometheusShadowRecorder:
    def compared(self, served_score: int, shadow_score: int) -> None:
        SHADOW_COMPARISONS.labels(outcome="compared").inc()
        SHADOW_SCORE_DIFFERENCE.observe(shadow_score - served_score)
        for threshold in DECISION_THRESHOLDS:
            if (served_score >= threshold) != (shadow_score >= threshold):
                SHADOW_THRESHOLD_CROSSINGS.labels(threshold=str(threshold)).inc()

    def dropped(self) -> None:
        SHADOW_COMPARISONS.labels(outcome="dropped").inc()
