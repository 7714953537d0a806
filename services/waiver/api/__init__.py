"""The waiver service's gRPC edge: the only code that sees gRPC and generated messages."""
