"""Adapters between the score service and the outside: the ledger's contract, ONNX model files."""
