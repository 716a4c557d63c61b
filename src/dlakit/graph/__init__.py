"""Model import: load and validate ONNX, pin input shapes, fold constants, infer every shape."""

from dlakit.graph.load import LoadedModel, load_model, parse_input_shapes, save_model

__all__ = ["LoadedModel", "load_model", "parse_input_shapes", "save_model"]
