"""The ledger's domain: money, ids, commands, events, the rules and the projection.

Pure Python on purpose: nothing here imports gRPC, protobuf, SQLModel or SQLAlchemy, so every
rule can be tested with plain values and the same `apply` folds the journal for live writes and
for verification.
"""
