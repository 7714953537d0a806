"""The score service layer: the serving model, the feature cache and the scoring use cases.

No gRPC and no protobuf here; `services.score.api` maps messages to these calls and the ledger is
reached through the `CreditHistorySource` port (`services.score.adapters.ledger_client`).
"""
