"""`python -m services.ledger.replay`: the same command as `sesame-replay`."""

from services.ledger.replay.cli import main

raise SystemExit(main())
