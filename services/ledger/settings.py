"""The ledger's settings, read from SESAME_LEDGER_* environment variables."""

from pydantic import ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from services.common.settings import DatabaseSettings

# What one SweepExpiredHolds call accepts (see the contract).
SWEEP_BATCH_SIZE_MAX = 10_000


class LedgerSettings(DatabaseSettings):
    """How the ledger runs: where it listens and which database holds the journal."""

    model_config = SettingsConfigDict(env_prefix="SESAME_LEDGER_")

    port: int = 50051
    # The journal's database. The ledger keeps two pools of database_pool_size connections,
    # one for writes and one for reads.
    database_url: str = "sqlite:///var/ledger.db"
    # How often the background sweeper journals the expiry of holds past their expiry time;
    # 0 turns it off (another process, or an operator with `sesame-ledger-admin sweep`, does it).
    sweep_interval_s: float = 1.0
    # The most holds one sweep RPC or background round expires before checking for more.
    sweep_batch_size: int = 1000
    # How often an entry stream looks for entries written by other processes.
    watch_poll_interval_s: float = 0.1
    # Write transactions (each a batch of concurrent requests) run at once; 0 means 1. More can
    # pay off on PostgreSQL with slow round trips and many clients; SQLite has a single writer.
    write_concurrency: int = 0
    # For simulations and tests only: read the time from this file (see
    # services.common.clock.FileClock) instead of the system clock.
    clock_file: str = ""
    # Signed checkpoints (see services.ledger.domain.checkpoints). The Ed25519 private key, PEM
    # (`sesame-ledger-admin new-checkpoint-key` makes one; `make run` does on first use): with
    # it, VerifyChain checks the checkpoints it is given.
    checkpoint_key_file: str = ""
    # The append-only log each checkpoint is appended to, one JSON line each: outside the
    # database, ideally on storage its writers cannot rewrite.
    checkpoint_log_file: str = ""
    # How often a checkpoint is signed (when anything new was journaled); 0 turns signing off.
    # Needs the key and the log.
    checkpoint_interval_s: float = 0.0

    @field_validator("write_concurrency")
    @classmethod
    def _concurrency_fits_the_pool(cls, concurrency: int, info: ValidationInfo) -> int:
        pool_size = info.data.get("database_pool_size", 1)
        if not 0 <= concurrency <= pool_size:
            raise ValueError(f"must be 0 to the pool size ({pool_size})")
        return concurrency

    @field_validator("sweep_batch_size")
    @classmethod
    def _batch_fits_one_sweep_call(cls, batch_size: int) -> int:
        if not 1 <= batch_size <= SWEEP_BATCH_SIZE_MAX:
            raise ValueError(f"must be 1 to {SWEEP_BATCH_SIZE_MAX}")
        return batch_size

    @field_validator("watch_poll_interval_s")
    @classmethod
    def _duration_is_positive(cls, duration_s: float) -> float:
        if duration_s <= 0:
            raise ValueError("must be greater than 0")
        return duration_s

    @field_validator("checkpoint_interval_s")
    @classmethod
    def _checkpoints_need_a_key_and_a_log(cls, interval_s: float, info: ValidationInfo) -> float:
        if interval_s < 0:
            raise ValueError("must not be negative")
        if interval_s > 0 and not (
            info.data.get("checkpoint_key_file") and info.data.get("checkpoint_log_file")
        ):
            raise ValueError(
                "signing checkpoints needs SESAME_LEDGER_CHECKPOINT_KEY_FILE and"
                " SESAME_LEDGER_CHECKPOINT_LOG_FILE"
            )
        return interval_s

    @field_validator("sweep_interval_s")
    @classmethod
    def _interval_is_not_negative(cls, interval_s: float) -> float:
        if interval_s < 0:
            raise ValueError("must not be negative")
        return interval_s
