"""Public data sets in the shape of Sesame's contracts, shared by training, tools and tests.

`taiwan` turns a row of the Taiwan credit data set into the partner report the ledger records and
the credit history it answers; `replayer` writes a CSV of it into a running ledger through the
ledger's contract (`sesame-replay`, `replay_cli`). This package depends on the generated
contracts and `services.common` only, never on a service's package, so every service and tool
can use it.
"""
