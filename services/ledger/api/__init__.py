"""The ledger's gRPC surface: the only code that sees grpc and the generated *_pb2 modules."""
