"""The ledger's use cases: one transaction each, over the storage ports declared in `ports`."""
