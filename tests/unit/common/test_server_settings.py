import pytest
from pydantic_settings import SettingsConfigDict

from services.common.settings import (
    ServerSettings,
    SettingsError,
    load_settings,
    require_transport_security,
)


class ExampleSettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="SESAME_EXAMPLE_")

    # Changing a default redefines the field; range checks must survive that.
    port: int = 50099
    database_url: str = "sqlite:///example.db"


class RequiredFieldSettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="SESAME_REQUIRED_")

    ledger_address: str


def test_defaults_apply_when_the_environment_is_empty() -> None:
    settings = load_settings(ServerSettings, {})

    assert settings.host == "127.0.0.1"
    assert settings.port == 0
    assert settings.metrics_port == 0
    assert not settings.metrics_enabled
    assert settings.max_concurrent_rpcs == 256
    assert settings.max_workers == 16
    assert settings.max_message_bytes == 4 * 1024 * 1024
    assert settings.grace_period_s == 5.0
    assert settings.log_level == "INFO"


def test_values_are_read_from_variables_with_the_service_prefix() -> None:
    settings = load_settings(
        ExampleSettings,
        {
            "SESAME_EXAMPLE_HOST": "0.0.0.0",
            "SESAME_EXAMPLE_PORT": "6000",
            "SESAME_EXAMPLE_METRICS_PORT": "9100",
            "SESAME_EXAMPLE_GRACE_PERIOD_S": "0.5",
            "SESAME_EXAMPLE_DATABASE_URL": "postgresql+psycopg://db/example",
        },
    )

    assert settings.host == "0.0.0.0"
    assert settings.port == 6000
    assert settings.metrics_enabled
    assert settings.metrics_port == 9100
    assert settings.grace_period_s == 0.5
    assert settings.database_url == "postgresql+psycopg://db/example"


def test_a_subclass_keeps_its_own_defaults() -> None:
    assert load_settings(ExampleSettings, {}).port == 50099


def test_an_out_of_range_port_fails_naming_the_environment_variable() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(ExampleSettings, {"SESAME_EXAMPLE_PORT": "70000"})

    assert "SESAME_EXAMPLE_PORT" in str(raised.value)
    assert "between 0 and 65535" in str(raised.value)
    assert set(raised.value.problems) == {"SESAME_EXAMPLE_PORT"}


def test_a_value_of_the_wrong_type_is_named_without_echoing_the_value() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(ExampleSettings, {"SESAME_EXAMPLE_MAX_WORKERS": "hunter2-secret"})

    assert "SESAME_EXAMPLE_MAX_WORKERS" in str(raised.value)
    assert "hunter2-secret" not in str(raised.value)
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


def test_every_bad_variable_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(
            ServerSettings,
            {
                "SESAME_MAX_CONCURRENT_RPCS": "0",
                "SESAME_MAX_MESSAGE_BYTES": "-1",
                "SESAME_GRACE_PERIOD_S": "-0.1",
                "SESAME_MAX_CONNECTION_AGE_S": "-1",
                "SESAME_METRICS_PORT": "65536",
                "SESAME_HOST": " ",
            },
        )

    assert set(raised.value.problems) == {
        "SESAME_MAX_CONCURRENT_RPCS",
        "SESAME_MAX_MESSAGE_BYTES",
        "SESAME_GRACE_PERIOD_S",
        "SESAME_MAX_CONNECTION_AGE_S",
        "SESAME_METRICS_PORT",
        "SESAME_HOST",
    }


def test_a_missing_required_field_is_named() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(RequiredFieldSettings, {})

    assert "SESAME_REQUIRED_LEDGER_ADDRESS" in raised.value.problems


def test_log_level_ignores_case() -> None:
    assert load_settings(ServerSettings, {"SESAME_LOG_LEVEL": "debug"}).log_level == "DEBUG"


def test_an_unknown_log_level_is_rejected() -> None:
    with pytest.raises(SettingsError, match="SESAME_LOG_LEVEL"):
        load_settings(ServerSettings, {"SESAME_LOG_LEVEL": "VERBOSE"})


def test_unknown_variables_with_the_prefix_are_ignored() -> None:
    settings = load_settings(ExampleSettings, {"SESAME_EXAMPLE_NOT_A_SETTING": "anything"})

    assert settings.port == 50099


def test_an_explicit_mapping_replaces_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SESAME_EXAMPLE_PORT", "not-a-number")

    assert load_settings(ExampleSettings, {}).port == 50099


def test_the_process_environment_is_read_when_no_mapping_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SESAME_EXAMPLE_PORT", "6001")

    assert load_settings(ExampleSettings).port == 6001


def test_settings_cannot_be_changed_after_loading() -> None:
    settings = load_settings(ServerSettings, {})

    with pytest.raises(ValueError, match="frozen"):
        settings.port = 1


def test_a_serving_process_needs_tls_files_or_plaintext_by_name() -> None:

    with pytest.raises(SettingsError) as raised:
        require_transport_security(load_settings(ExampleSettings, {}))
    assert "SESAME_EXAMPLE_TLS_CERTIFICATE_FILE" in raised.value.problems
    require_transport_security(load_settings(ExampleSettings, {"SESAME_EXAMPLE_PLAINTEXT": "true"}))
    tls = {
        "SESAME_EXAMPLE_TLS_CERTIFICATE_FILE": "a.pem",
        "SESAME_EXAMPLE_TLS_PRIVATE_KEY_FILE": "a-key.pem",
        "SESAME_EXAMPLE_TLS_CA_FILE": "ca.pem",
    }
    require_transport_security(load_settings(ExampleSettings, tls))


def test_tls_files_come_together_and_never_with_plaintext() -> None:
    with pytest.raises(SettingsError):
        load_settings(ExampleSettings, {"SESAME_EXAMPLE_TLS_CERTIFICATE_FILE": "a.pem"})
    with pytest.raises(SettingsError):
        load_settings(
            ExampleSettings,
            {
                "SESAME_EXAMPLE_PLAINTEXT": "true",
                "SESAME_EXAMPLE_TLS_CERTIFICATE_FILE": "a.pem",
                "SESAME_EXAMPLE_TLS_PRIVATE_KEY_FILE": "a-key.pem",
                "SESAME_EXAMPLE_TLS_CA_FILE": "ca.pem",
            },
        )
