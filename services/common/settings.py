"""Server settings read from environment variables, checked once at start-up.

Each service subclasses `ServerSettings` with its own prefix and fields::

    class LedgerSettings(ServerSettings):
        model_config = SettingsConfigDict(env_prefix="SESAME_LEDGER_")

        port: int = 50051
        database_url: str = "sqlite:///var/ledger.db"

and builds them with `load_settings(LedgerSettings)`, which turns any bad value into a
`SettingsError` naming the environment variable (for example `SESAME_LEDGER_PORT`).

Settings come from environment variables only (no dotenv or secret files), so what a
process runs with is exactly what its environment says.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Literal, Self, TypeVar

from pydantic import ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from services.common.tls import TlsFiles

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

HIGHEST_PORT = 65535
FOUR_MEBIBYTES = 4 * 1024 * 1024


class SettingsError(ValueError):
    """Settings could not be built; `problems` maps each environment variable to why."""

    def __init__(self, settings_name: str, problems: Mapping[str, str]) -> None:
        self.settings_name = settings_name
        self.problems = dict(problems)
        listed = "; ".join(f"{variable}: {why}" for variable, why in self.problems.items())
        super().__init__(f"invalid {settings_name}: {listed}")


class ServerSettings(BaseSettings):
    """What every Sesame gRPC server needs; subclasses set `env_prefix` and add their own.

    Ranges are checked by validators rather than `Field(ge=..., le=...)` because a subclass
    that only changes a default (`port: int = 50051`) replaces the whole field definition,
    and would silently drop constraints declared on the field; validators are inherited.
    """

    model_config = SettingsConfigDict(env_prefix="SESAME_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    # 0 asks the operating system for a free port; the bound port is reported at start-up.
    port: int = 0
    # 0 disables the Prometheus endpoint.
    metrics_port: int = 0
    max_concurrent_rpcs: int = 256
    max_workers: int = 16
    max_message_bytes: int = FOUR_MEBIBYTES
    grace_period_s: float = 5.0
    # Connections older than this are closed (after the grace period) so clients reconnect and
    # new replicas get their share; 0 keeps connections for as long as clients want.
    max_connection_age_s: float = 0.0
    log_level: LogLevel = "INFO"
    # Where to send traces (an OpenTelemetry collector's OTLP/gRPC address, for example
    # http://otel-collector:4317); empty turns tracing off. See services/common/tracing.py.
    otlp_endpoint: str = ""
    # Mutual TLS (services/common/tls.py): this server's certificate chain and key, and the CA
    # its callers' certificates must be signed by. The service's channels to other services
    # present the same certificate and trust the same CA.
    tls_certificate_file: str = ""
    tls_private_key_file: str = ""
    tls_ca_file: str = ""
    # Plaintext, with no caller identity and so no authorisation, only when asked for here.
    plaintext: bool = False
    # A plaintext listener answering the standard health service only, for probes that cannot
    # speak TLS (the kubelet's gRPC probes); 0 disables it.
    health_port: int = 0
    # Who may call what (services/common/access.py); empty: the bundled access_policy.toml.
    access_policy_file: str = ""
    # The public key (PEM) that verifies platforms' bearer tokens; empty: tokens are refused.
    token_public_key_file: str = ""
    # The key of the user pseudonyms in logs (services/common/pseudonyms.py); empty: a random
    # key per process.
    pseudonym_key_file: str = ""
    # How often a service checks that the services it calls answer their health checks (see
    # services/common/dependency_health.py), and how long it waits for each answer; an interval
    # of 0 turns the checks off. A server that calls no other service ignores both.
    dependency_check_interval_s: float = 2.0
    dependency_check_timeout_s: float = 1.0

    @property
    def metrics_enabled(self) -> bool:
        return self.metrics_port != 0

    @property
    def tls_files(self) -> TlsFiles | None:
        """The TLS files, or None for a plaintext server. Settings with neither are refused by
        `run_with_settings` before a service starts; built in a process of its own (a test),
        they are plaintext."""
        if self.plaintext or not self.tls_certificate_file:
            return None
        return TlsFiles(
            Path(self.tls_certificate_file), Path(self.tls_private_key_file), Path(self.tls_ca_file)
        )

    @model_validator(mode="after")
    def _transport_is_chosen(self) -> Self:
        files = (self.tls_certificate_file, self.tls_private_key_file, self.tls_ca_file)
        if self.plaintext and any(files):
            raise ValueError("set the TLS files or plaintext, not both")
        if any(files) and not all(files):
            raise ValueError("the TLS certificate, private key and CA files must be given together")
        return self

    @field_validator("host")
    @classmethod
    def _host_is_not_empty(cls, host: str) -> str:
        if not host.strip():
            raise ValueError("must not be empty")
        return host

    @field_validator("port", "metrics_port", "health_port")
    @classmethod
    def _port_is_in_range(cls, port: int) -> int:
        if not 0 <= port <= HIGHEST_PORT:
            raise ValueError(f"must be between 0 and {HIGHEST_PORT}")
        return port

    @field_validator("max_concurrent_rpcs", "max_workers", "max_message_bytes")
    @classmethod
    def _count_is_positive(cls, count: int) -> int:
        if count <= 0:
            raise ValueError("must be greater than 0")
        return count

    @field_validator("grace_period_s", "max_connection_age_s", "dependency_check_interval_s")
    @classmethod
    def _duration_is_not_negative(cls, duration_s: float) -> float:
        if duration_s < 0:
            raise ValueError("must not be negative")
        return duration_s

    @field_validator("dependency_check_timeout_s")
    @classmethod
    def _check_timeout_is_positive(cls, timeout_s: float) -> float:
        if timeout_s <= 0:
            raise ValueError("must be greater than 0")
        return timeout_s

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level_ignores_case(cls, log_level: object) -> object:
        return log_level.upper() if isinstance(log_level, str) else log_level

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        explicit_environment = _explicit_environment.get()
        if explicit_environment is None:
            return init_settings, env_settings
        return init_settings, _MappingEnvironmentSource(settings_cls, explicit_environment)


class DatabaseSettings(ServerSettings):
    """A server with a database of its own; subclasses give `database_url` its default."""

    # SQLite is the embedded default; production points this at PostgreSQL
    # (postgresql+psycopg://user@host/db).
    database_url: str = ""
    # The local default creates the schema at start; production runs the migration as its own step.
    create_schema: bool = True
    # Connections per pool, sized near max_workers: each worker thread holds at most one at a time.
    database_pool_size: int = 10
    # How long a call waits for a free connection before failing with UNAVAILABLE.
    database_pool_timeout_s: float = 10.0

    @field_validator("database_url")
    @classmethod
    def _database_url_is_supported(cls, database_url: str) -> str:
        if not database_url.startswith(("sqlite:///", "postgresql")):
            raise ValueError("must be a sqlite:/// file URL or a postgresql+psycopg:// URL")
        return database_url

    @field_validator("database_pool_size")
    @classmethod
    def _pool_size_is_positive(cls, pool_size: int) -> int:
        if pool_size <= 0:
            raise ValueError("must be greater than 0")
        return pool_size

    @field_validator("database_pool_timeout_s")
    @classmethod
    def _timeout_is_positive(cls, timeout_s: float) -> float:
        if timeout_s <= 0:
            raise ValueError("must be greater than 0")
        return timeout_s


SettingsT = TypeVar("SettingsT", bound=ServerSettings)


def load_settings(
    settings_class: type[SettingsT], environ: Mapping[str, str] | None = None
) -> SettingsT:
    """Build `settings_class` from `environ` (the process environment when None).

    Raises `SettingsError` naming every bad variable. Input values are left out of the
    message on purpose: a mistyped secret must not end up in start-up logs.
    """
    with _environment_for_this_call(environ):
        try:
            return settings_class()
        except ValidationError as error:
            problems = {
                _variable_name(settings_class, problem["loc"]): _reason(problem["msg"])
                for problem in error.errors()
            }
            # `from None` keeps pydantic's own message, which includes the input values,
            # out of tracebacks.
            raise SettingsError(settings_class.__name__, problems) from None


def run_with_settings(settings_class: type[SettingsT], run: Callable[[SettingsT], int]) -> int:
    """A process entry point: builds the settings from the environment and runs with them.

    Bad settings end the process with exit code 2 and one line naming every bad variable, before
    anything starts.
    """
    try:
        settings = load_settings(settings_class)
        require_transport_security(settings)
    except SettingsError as error:
        print(error, file=sys.stderr)
        return 2
    return run(settings)


def require_transport_security(settings: ServerSettings) -> None:
    """A serving process runs with mutual TLS unless plaintext is asked for by name: settings
    with neither are refused (SettingsError naming the variables)."""
    if settings.plaintext or settings.tls_certificate_file:
        return
    prefix = str(type(settings).model_config.get("env_prefix", "")).upper()
    raise SettingsError(
        type(settings).__name__,
        {
            f"{prefix}TLS_CERTIFICATE_FILE": (
                f"required, with {prefix}TLS_PRIVATE_KEY_FILE and {prefix}TLS_CA_FILE "
                f"(`make certs` makes local ones), unless {prefix}PLAINTEXT=true"
            )
        },
    )


def _variable_name(settings_class: type[ServerSettings], location: tuple[int | str, ...]) -> str:
    if not location:
        return settings_class.__name__
    prefix = settings_class.model_config.get("env_prefix", "")
    return f"{prefix}{location[0]}".upper()


def _reason(pydantic_message: str) -> str:
    # Our validators raise ValueError, which pydantic reports as "Value error, <text>".
    return pydantic_message.removeprefix("Value error, ")


# Lets `load_settings` read from a given mapping without touching `os.environ`, which other
# threads may be reading at the same time; a context variable keeps each call separate.
_explicit_environment: ContextVar[Mapping[str, str] | None] = ContextVar(
    "sesame_explicit_environment", default=None
)


@contextmanager
def _environment_for_this_call(environ: Mapping[str, str] | None) -> Iterator[None]:
    token = _explicit_environment.set(environ)
    try:
        yield
    finally:
        _explicit_environment.reset(token)


class _MappingEnvironmentSource(EnvSettingsSource):
    """Reads variables from a given mapping instead of the process environment."""

    def __init__(self, settings_class: type[BaseSettings], environ: Mapping[str, str]) -> None:
        # Set before the parent constructor, which loads the variables straight away.
        self._environ = environ
        super().__init__(settings_class)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )
