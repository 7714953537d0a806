"""`python -m services.waiver`: the waiver service as a process, configured by SESAME_WAIVER_*
variables; see `services.waiver.app`."""

import sys

from services.common.settings import run_with_settings
from services.waiver.app import run
from services.waiver.settings import WaiverSettings

if __name__ == "__main__":
    sys.exit(run_with_settings(WaiverSettings, run))
