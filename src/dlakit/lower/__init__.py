"""Lowering: an ONNX model and its scales -> a QGraph of DLA hardware layers (INT8/FP16) and
fallback layers, the register values of each layer, and the bit-exact integer reference.

:mod:`~dlakit.lower.lowering` builds the :class:`~dlakit.lower.qgraph.QGraph` following the
support verdicts; :mod:`~dlakit.lower.hwparams` turns scales into register values (SDP
multipliers and shifts, PDP reciprocals, LUTs); :mod:`~dlakit.lower.intref` executes a QGraph
bit-exactly as the NVDLA datapath would.
"""
