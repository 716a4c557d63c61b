"""INT8 quantization: calibration to per-tensor scales, scale files, and the integer reference.

Calibration (``dlakit calibrate``): :mod:`dlakit.quant.calibrate` runs the pipeline,
:mod:`~dlakit.quant.observe` collects tensor ranges with onnxruntime,
:mod:`~dlakit.quant.calibrators` turns them into amax (entropy, percentile, max),
:mod:`~dlakit.quant.scales` is the scales file every later INT8 stage reads, and
:mod:`~dlakit.quant.formats` writes and reads TensorRT calibration caches and NVDLA tables.
"""
