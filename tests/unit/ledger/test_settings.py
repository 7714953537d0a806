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
    ],
)
def test_unsafe_values_are_refused_naming_the_variable(variable, value):
    with pytest.raises(SettingsError) as refused:
        load_settings(LedgerSettings, {variable: value})

    assert variable in refused.value.problems
