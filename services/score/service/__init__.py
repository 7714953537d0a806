"""The score service layer: the model registry, the feature cache and the scoring use cases.

No gRPC, no protobuf and no model runtime here: `services.score.api` maps messages to these
calls, the ledger is reached through the `CreditHistorySource` port
(`services.score.adapters.ledger_client`) and models through the `ModelLoader` and `Model` ports
(`services.score.adapters.onnx_model`).
"""
