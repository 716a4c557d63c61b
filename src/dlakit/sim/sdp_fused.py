"""CACC output + SDP (X1, X2, Y, C) as one pass per element, for decoded operations.

The same arithmetic as :func:`dlakit.sim.conv.cacc_truncate` and :func:`dlakit.sim.sdp.sdp_process`
(the definition; ``tests/sim/test_sim_replay.py`` checks both paths against it), for the subset
the replay layer decodes: operands from registers or per-kernel tables, the Y ALU operand also
per element (an INT8 cube through its converter), no LUT. Two implementations of one chain:

* :func:`_chain_numba`: a compiled loop over the batch that reads each accumulator once and
  writes each INT8 result once into its destination surface (CPU; no temporaries);
* :func:`_chain_torch`: whole-tensor int64 operations (CUDA, or CPU without numba).

Cubes are ``[batch, C/atom, H, W, atom]`` views (the feature layout, any strides), so the
result lands in memory without a copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from dlakit.sim.arith import saturate, shift_right_round

ALU_CODES = {"SUM": 1, "MAX": 2, "MIN": 3}


@dataclass(frozen=True)
class XParams:
    """One X unit (BS or BN), operands already shifted and saturated as the ALU takes them."""

    alu: int  # 0 bypass, else ALU_CODES
    alu_op: np.ndarray  # int64 [C]
    mul: bool
    mul_op: np.ndarray  # int64 [C]
    shift: int
    prelu: bool
    relu: bool


@dataclass(frozen=True)
class YParams:
    """The Y (EW) unit without its LUT: MUL, then ALU with a per-channel or per-element operand."""

    mul: bool
    mul_op: np.ndarray  # int64 [C]
    mul_shift: int
    mul_prelu: bool
    alu: int  # 0 bypass, else ALU_CODES
    alu_op: np.ndarray  # int64 [C] (per channel)
    per_element: bool  # the ALU operand is the E-RDMA cube, through the converter below
    cvt: bool
    cvt_offset: int = 0
    cvt_scale: int = 1
    cvt_shift: int = 0


@dataclass(frozen=True)
class SdpParams:
    channels: int  # C of the cube SDP processes (padded to the atom)
    cacc_shift: int  # CACC truncate before SDP (conv); -1: the input is INT8 from memory
    x1: XParams | None
    x2: XParams | None
    y: YParams | None
    cvt_offset: int
    cvt_scale: int
    cvt_shift: int
    _packed: dict = field(default_factory=dict, compare=False, repr=False)

    def packed(self) -> tuple[np.ndarray, np.ndarray]:
        """(config int64 [26], per-channel operands int64 [6, C]) for the compiled loop."""
        if not self._packed:
            zeros = np.zeros(self.channels, dtype=np.int64)
            cfg = [self.cacc_shift]
            chan = []
            for x in (self.x1, self.x2):
                if x is None:
                    cfg += [0, 0, 0, 0, 0, 0]
                    chan += [zeros, zeros]
                else:
                    cfg += [1, x.alu, int(x.mul), x.shift, int(x.prelu), int(x.relu)]
                    chan += [x.alu_op, x.mul_op]
            y = self.y
            if y is None:
                cfg += [0] * 10
                chan += [zeros, zeros]
            else:
                cfg += [1, int(y.mul), y.mul_shift, int(y.mul_prelu), y.alu, int(y.per_element),
                        int(y.cvt), y.cvt_offset, y.cvt_scale, y.cvt_shift]  # fmt: skip
                chan += [y.mul_op, y.alu_op]
            cfg += [self.cvt_offset, self.cvt_scale, self.cvt_shift]
            self._packed["cfg"] = np.asarray(cfg, dtype=np.int64)
            self._packed["chan"] = np.ascontiguousarray(np.stack(chan).astype(np.int64))
        return self._packed["cfg"], self._packed["chan"]


def _same_but_operands(items: list, skip: tuple[str, ...] = ()) -> bool:
    """Whether dataclasses differ only in their per-channel operand arrays (and ``skip``)."""
    first = items[0]
    for item in items[1:]:
        for name, value in vars(first).items():
            if isinstance(value, np.ndarray) or name in skip:
                continue
            if getattr(item, name) != value:
                return False
    return True


def concat_chains(chains: list[SdpParams]) -> SdpParams | None:
    """One chain over the channels of ``chains`` side by side (None: they differ otherwise)."""
    if not _same_but_operands(chains, ("channels", "x1", "x2", "y", "_packed")):
        return None
    parts = {}
    for unit in ("x1", "x2", "y"):
        units = [getattr(c, unit) for c in chains]
        if units[0] is None:
            if any(u is not None for u in units):
                return None
            parts[unit] = None
            continue
        if any(u is None for u in units) or not _same_but_operands(units):
            return None
        arrays = {
            name: np.concatenate([getattr(u, name) for u in units])
            for name, value in vars(units[0]).items()
            if isinstance(value, np.ndarray)
        }
        parts[unit] = type(units[0])(**{**vars(units[0]), **arrays})
    first = chains[0]
    return SdpParams(
        channels=sum(c.channels for c in chains),
        cacc_shift=first.cacc_shift,
        x1=parts["x1"],
        x2=parts["x2"],
        y=parts["y"],
        cvt_offset=first.cvt_offset,
        cvt_scale=first.cvt_scale,
        cvt_shift=first.cvt_shift,
    )


def run_chain(
    x: torch.Tensor, out: torch.Tensor, params: SdpParams, ew: torch.Tensor | None = None
) -> None:
    """SDP of ``x`` (accumulators or INT8, ``[B, C/a, H, W, a]``) into the INT8 cube ``out``.

    ``ew`` is the per-element Y operand cube (INT8, same shape) when the chain takes one.
    """
    kernels = numba_kernels()
    if x.device.type == "cpu" and kernels is not None:
        cfg, chan = params.packed()
        dummy = np.zeros((1, 1, 1, 1, 1), dtype=np.int8)
        kernels.chain(
            x.numpy(),
            out.view(torch.int8).numpy(),
            dummy if ew is None else ew.view(torch.int8).numpy(),
            cfg,
            chan,
        )
        return
    out.view(torch.int8).copy_(chain_torch(x, params, ew))


# ---------------------------------------------------------------- whole tensors (torch)


def _per_channel(values: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """[C] operands as [1, C/a, 1, 1, a], broadcastable to a feature cube."""
    atom = like.shape[-1]
    t = torch.as_tensor(values, dtype=torch.int64, device=like.device)
    return t.reshape(1, -1, 1, 1, atom)


def _x_torch(x: torch.Tensor, p: XParams) -> torch.Tensor:
    if p.alu:
        op = _per_channel(p.alu_op, x)
        x = x + op if p.alu == 1 else (torch.maximum(x, op) if p.alu == 2 else torch.minimum(x, op))
    if not p.mul:
        y = shift_right_round(x, p.shift, 49, 32)
    else:
        y = shift_right_round(x * _per_channel(p.mul_op, x), p.shift, 49, 32)
        if p.prelu:
            y = torch.where(x >= 0, x, y)
    return y.clamp_min(0) if p.relu else y


def chain_torch(x: torch.Tensor, params: SdpParams, ew: torch.Tensor | None = None) -> torch.Tensor:
    """The chain on whole int64 tensors; returns the INT8 cube."""
    x = x.to(torch.int64)
    if params.cacc_shift >= 0:
        from dlakit.sim.conv import cacc_truncate

        x = cacc_truncate(x, params.cacc_shift)
    for unit in (params.x1, params.x2):
        if unit is not None:
            x = _x_torch(x, unit)
    y = params.y
    if y is not None:
        if y.mul:
            prod = shift_right_round(x * _per_channel(y.mul_op, x), y.mul_shift, 64, 32)
            x = torch.where(x >= 0, x, prod) if y.mul_prelu else prod
        if y.alu:
            if y.per_element:
                assert ew is not None
                op = ew.view(torch.int8).to(torch.int64)
                if y.cvt:
                    op = shift_right_round((op - y.cvt_offset) * y.cvt_scale, y.cvt_shift, 49, 32)
            else:
                op = _per_channel(y.alu_op, x)
            if y.alu == 1:
                x = saturate(x + op, 32)
            else:
                x = torch.maximum(x, op) if y.alu == 2 else torch.minimum(x, op)
    if params.cvt_offset:
        x = x - params.cvt_offset
    if params.cvt_scale != 1:
        x = x * params.cvt_scale
    return shift_right_round(x, params.cvt_shift, 49, 8).to(torch.int8)


# ---------------------------------------------------------------- one pass (numba)

_KERNELS: list = []


def numba_kernels():
    """The compiled loops (:mod:`dlakit.sim.numba_kernels`), or None where numba is not
    installed (the torch path then runs)."""
    if not _KERNELS:
        try:
            from dlakit.sim import numba_kernels as kernels

            _KERNELS.append(kernels)
        except ImportError:
            _KERNELS.append(None)
    return _KERNELS[0]
