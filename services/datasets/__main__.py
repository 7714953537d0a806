"""`python -m services.datasets`: the same command as `sesame-replay`."""

from services.datasets.replay_cli import main

raise SystemExit(main())
