"""The waiver service's settings, read from SESAME_WAIVER_* environment variables."""

from pathlib import Path

from pydantic import PositiveInt, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from services.common.money import is_known_currency
from services.common.settings import DatabaseSettings
from services.waiver.service.recent_scores import MAX_USERS_DEFAULT

SEED_POLICIES_FILE = Path(__file__).resolve().parent / "policies" / "seed.toml"


class WaiverSettings(DatabaseSettings):
    """How the waiver service runs: where it listens, its database, where the ledger and the
    score service are, and the policies it starts with."""

    model_config = SettingsConfigDict(env_prefix="SESAME_WAIVER_")

    port: int = 50053
    ledger_address: str = "127.0.0.1:50051"
    score_address: str = "127.0.0.1:50052"
    # Orders, policies and request records.
    database_url: str = "sqlite:///var/waiver.db"
    # One connection for each worker thread (max_workers), so no call waits for one.
    database_pool_size: int = 16
    # Every amount of an order or a policy is in this currency.
    currency_code: str = "CNY"
    # Scenario policies stored at start when not stored yet; empty for none.
    seed_policies_file: str = str(SEED_POLICIES_FILE)
    # The longest an outbound call may take, also bounded by the caller's remaining deadline.
    ledger_deadline_s: float = 2.0
    score_deadline_s: float = 1.0
    # How long a score the waiver was given may be used again, from when the ledger was read
    # for it, while no entry of the user's credit history arrives (see
    # services.waiver.service.recent_scores); 0 asks the score service every time.
    score_cache_max_age_s: float = 60.0
    # How many users' scores are kept at most.
    score_cache_max_entries: PositiveInt = MAX_USERS_DEFAULT
    # How often the sweeper writes time-driven changes; 0 turns it off.
    sweep_interval_s: float = 1.0
    # How often the recovery pass finishes or undoes steps a crash left half done; 0 turns it off.
    recovery_interval_s: float = 5.0
    # A step in flight longer than this is taken as abandoned and finished by the recovery pass.
    step_lease_s: float = 30.0
    # A creation its merchant has not confirmed by a retry this long after it began is undone.
    create_undo_after_s: float = 60.0
    # For simulations and tests only: read the time from this file (see
    # services.common.clock.FileClock) instead of the system clock.
    clock_file: str = ""

    @field_validator("currency_code")
    @classmethod
    def _currency_is_known(cls, currency_code: str) -> str:
        if not is_known_currency(currency_code):
            raise ValueError("must be an ISO 4217 currency code in upper case")
        return currency_code

    @field_validator("ledger_deadline_s", "score_deadline_s", "step_lease_s")
    @classmethod
    def _duration_is_positive(cls, duration_s: float) -> float:
        if duration_s <= 0:
            raise ValueError("must be greater than 0")
        return duration_s

    @field_validator("sweep_interval_s", "recovery_interval_s", "score_cache_max_age_s")
    @classmethod
    def _interval_is_not_negative(cls, interval_s: float) -> float:
        if interval_s < 0:
            raise ValueError("must not be negative")
        return interval_s

    @field_validator("create_undo_after_s")
    @classmethod
    def _undo_follows_the_lease(cls, undo_after_s: float, info: ValidationInfo) -> float:
        if undo_after_s < info.data.get("step_lease_s", 0):
            raise ValueError("must not be shorter than the step lease")
        return undo_after_s
