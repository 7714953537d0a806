"""`python -m services.score`: the score service as a process, configured by SESAME_SCORE_*
variables.

The server starts answering health checks at once, as NOT_SERVING; it reports SERVING once the
first model is loaded and warmed up. SIGTERM or SIGINT stops it gracefully. See
`services.score.app` for the worker processes.
"""

import sys

from services.common.settings import run_with_settings
from services.score.app import run
from services.score.settings import ScoreSettings

if __name__ == "__main__":
    sys.exit(run_with_settings(ScoreSettings, run))
