"""Runs the score service: `python -m services.score`, configured by SESAME_SCORE_* variables.

The server starts answering health checks at once, as NOT_SERVING; it reports SERVING once the
first model is loaded and warmed up. SIGTERM or SIGINT stops it gracefully.

With more than one worker (SESAME_SCORE_WORKERS; 0, the default, means one per CPU of the
quota) this process supervises that many server processes sharing the port; see
services/common/workers.py. Each worker loads its model before it joins the port, so the port
answers once the first worker is ready, and only ready workers take calls.
"""

from __future__ import annotations

import sys
from functools import partial

from services.common.logging import configure_logging
from services.common.server import start_metrics_endpoint
from services.common.settings import SettingsError, load_settings
from services.common.workers import SharedText, run_workers, worker_count
from services.score.app import SERVICE_LABEL, run_server, run_worker
from services.score.settings import ScoreSettings


def main() -> None:
    settings = load_settings(ScoreSettings)
    workers = worker_count(settings.workers)
    if workers == 1:
        run_server(settings)
        return
    if settings.port == 0:
        raise SettingsError(
            "ScoreSettings", {"SESAME_SCORE_PORT": "must be a fixed port when workers share it"}
        )
    configure_logging(SERVICE_LABEL, settings.log_level)
    worker_main = partial(run_worker, SharedText())
    metrics_endpoint = partial(start_metrics_endpoint, settings)
    sys.exit(
        run_workers(workers, worker_main, name=SERVICE_LABEL, metrics_endpoint=metrics_endpoint)
    )


if __name__ == "__main__":
    main()
