"""Adapters between the score domain and the outside: the ledger's contract, model files."""
