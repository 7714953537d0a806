"""The ledger's settings come from SESAME_LEDGER_* variables and refuse unsafe values."""

from __future__ import annotations

import pytest

from services.common.settings import SettingsError, load_settings
from services.ledger.settings import LedgerSettings


def test_settings_come_from_the_environment():
    settings = load_settings(
        LedgerSettings,
        {
            "SESAME_LEDGER_PORT": "0",
            "SESAME_LEDGER_DATABASE_URL": "postgresql+psycopg://ledger@db/ledger",
            "SESAME_LEDGER_DATABASE_POOL_SIZE": "20",
            "SESAME_LEDGER_SWEEP_INTERVAL_S": "0",
        },
    )

    assert settings.port == 0
    assert settings.database_url == "postgresql+psycopg://ledger@db/ledger"
    assert settings.database_pool_size == 20
    assert settings.sweep_interval_s == 0


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SESAME_LEDGER_DATABASE_URL", "mysql://ledger@db/ledger"),
        ("SESAME_LEDGER_DATABASE_POOL_SIZE", "0"),
        ("SESAME_LEDGER_SWEEP_INTERVAL_S", "-1"),
        ("SESAME_LEDGER_SWEEP_BATCH_SIZE", "10001"),
        ("SESAME_LEDGER_WATCH_POLL_INTERVAL_S", "0"),
        ("SESAME_LEDGER_CHECKPOINT_INTERVAL_S", "-1"),
        # Signing checkpoints needs the key and the log.
        ("SESAME_LEDGER_CHECKPOINT_INTERVAL_S", "60"),
    ],
)
def test_unsafe_values_are_refused_naming_the_variable(variable, value):
    with pytest.raises(SettingsError) as refused:
        load_settings(LedgerSettings, {variable: value})

    assert variable in refused.value.problems


def test_checkpoints_are_signed_only_with_a_key_and_a_log():
    settings = load_settings(
        LedgerSettings,
        {
            "SESAME_LEDGER_CHECKPOINT_KEY_FILE": "key.pem",
            "SESAME_LEDGER_CHECKPOINT_LOG_FILE": "checkpoints.jsonl",
            "SESAME_LEDGER_CHECKPOINT_INTERVAL_S": "60",
        },
    )

    assert settings.checkpoint_interval_s == 60
    assert load_settings(LedgerSettings, {}).checkpoint_interval_s == 0
