"""Running a compiled ``.dla`` artifact: DLA segments on the simulator, fallback segments in
PyTorch (or onnxruntime), tensors handed between them."""

from dlakit.extras import require

# The simulator and the fallback interpreter both compute on torch.
require("torch", "running a .dla artifact")
