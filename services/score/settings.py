"""The score service's settings, read from SESAME_SCORE_* environment variables."""

from pathlib import Path

from pydantic import field_validator
from pydantic_settings import SettingsConfigDict

from services.common.history_cache import MAX_AGE_S_DEFAULT, MAX_ENTRIES_DEFAULT
from services.common.settings import ServerSettings
from services.score.adapters.model_files import MODELS_ROOT

# ScoreFeatures takes up to 100000 rows of 18 doubles (about 16 MB on the wire).
SCORE_MESSAGE_BYTES_MAX = 64 * 1024 * 1024


class ScoreSettings(ServerSettings):
    """How the score service runs: where it listens, where the ledger and the models are."""

    model_config = SettingsConfigDict(env_prefix="SESAME_SCORE_")

    port: int = 50052
    ledger_address: str = "127.0.0.1:50051"
    max_message_bytes: int = SCORE_MESSAGE_BYTES_MAX
    # The directory of model versions; the newest is loaded at start-up unless model_version.
    models_directory: Path = MODELS_ROOT
    model_version: str = ""
    # A model version scored alongside the served one and measured (Prometheus metrics
    # sesame_score_shadow_*), never served; empty for none. See service/shadow.py.
    shadow_model_version: str = ""
    ledger_deadline_s: float = 2.0
    # The feature cache (services/common/history_cache.py says how stale it may be); its size
    # is chosen so that the caches of a pod's processes (one per CPU) fit in the pod's memory.
    cache_max_entries: int = MAX_ENTRIES_DEFAULT
    cache_max_age_s: float = MAX_AGE_S_DEFAULT
    history_fetch_threads: int = 16
    # Drift: how many of the last scored users the population stability indices rest on (see
    # service/drift_watch.py; Prometheus metrics sesame_score_feature_psi, sesame_score_psi).
    drift_window_rows: int = 5_000
    # Worker processes sharing the port: N, or 0 for one per CPU of the container's quota
    # (see services/common/workers.py). Scoring is CPU-bound and Python uses one core per
    # process, so this is how the service uses more than one core.
    workers: int = 0
    # Long-lived clients (the waiver service) would otherwise stay on one worker or replica.
    max_connection_age_s: float = 300.0

    @field_validator("ledger_deadline_s", "cache_max_age_s")
    @classmethod
    def _duration_is_positive(cls, duration_s: float) -> float:
        if duration_s <= 0:
            raise ValueError("must be greater than 0")
        return duration_s

    @field_validator("cache_max_entries")
    @classmethod
    def _size_is_not_negative(cls, size: int) -> int:
        if size < 0:
            raise ValueError("must not be negative")
        return size

    @field_validator("workers")
    @classmethod
    def _workers_are_not_negative(cls, workers: int) -> int:
        if workers < 0:
            raise ValueError("must not be negative (0 means one per CPU of the quota)")
        return workers

    @field_validator("history_fetch_threads", "drift_window_rows")
    @classmethod
    def _threads_are_positive(cls, threads: int) -> int:
        if threads <= 0:
            raise ValueError("must be greater than 0")
        return threads
