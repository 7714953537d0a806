"""Replays the Taiwan credit data set into the ledger: `taiwan` converts, `replayer` sends, `cli`
is the `sesame-replay` command."""
