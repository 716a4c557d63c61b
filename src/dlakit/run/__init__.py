"""Running a compiled ``.dla`` artifact: DLA segments on the simulator, fallback segments in
PyTorch (or onnxruntime), tensors handed between them."""
