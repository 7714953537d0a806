"""The score's domain: credit history, features, scaling, reasons, the thin-file rule, and the
service's error reasons.

Pure Python on purpose: nothing here imports gRPC, protobuf or onnxruntime, so training, serving
and tests all reach the same rules through plain values.
"""
