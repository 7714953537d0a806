"""What the ledger keeps outside its database: the checkpoint signing key and the checkpoint log."""
