"""The waiver service's settings, read from SESAME_WAIVER_* environment variables."""

from pydantic_settings import SettingsConfigDict

from services.common.settings import ServerSettings


class WaiverSettings(ServerSettings):
    """How the waiver service runs: where it listens and where the ledger and score services are."""

    model_config = SettingsConfigDict(env_prefix="SESAME_WAIVER_")

    port: int = 50053
    ledger_address: str = "127.0.0.1:50051"
    score_address: str = "127.0.0.1:50052"
