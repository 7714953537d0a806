"""The waiver's use cases, over the ports in `ports` (no gRPC, no SQL)."""
