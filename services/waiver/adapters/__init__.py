"""The ledger and the score service as the waiver reaches them: gRPC clients behind its ports."""
