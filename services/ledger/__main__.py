"""`python -m services.ledger`: the ledger as a process, configured by SESAME_LEDGER_* variables.

The bound port is logged in the "server_started" line; see `services.ledger.app`.
"""

import sys

from services.common.settings import run_with_settings
from services.ledger.app import run
from services.ledger.settings import LedgerSettings

if __name__ == "__main__":
    sys.exit(run_with_settings(LedgerSettings, run))
