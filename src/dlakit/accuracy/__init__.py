"""Accuracy: FP32 (onnxruntime) against DLA-INT8 (the integer reference) on real inputs, per
output and per layer, FP16 suggestions, and onnxruntime's static INT8 as a peer."""
