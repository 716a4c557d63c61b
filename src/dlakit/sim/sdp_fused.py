"""CACC output + SDP (X1, X2, Y, C) as one pass per element, for decoded operations.

The same arithmetic as :func:`dlakit.sim.conv.cacc_truncate` and :func:`dlakit.sim.sdp.sdp_process`
(the definition; ``tests/sim/test_sim_replay.py`` checks both paths against it), for the subset
the replay layer decodes: operands from registers or per-kernel tables, the Y ALU operand also
per element (an INT8 cube through its converter), no LUT. Two implementations of one chain:

* :func:`_chain_numba`: a compiled loop over the batch that reads each accumulator once and
  writes each INT8 result once into its destination surface (CPU; no temporaries);
* :func:`chain_torch`: whole-tensor int64 operations (CUDA, where they compile into one fused
  kernel per chain structure, or CPU without numba).

Cubes are ``[batch, C/atom, H, W, atom]`` views (the feature layout, any strides), so the
result lands in memory without a copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from dlakit.sim.arith import saturate

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

    def on_device(self, device: torch.device, atom: int) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`packed` as tensors on ``device``: scalars [26], operands [6, 1, C/a, 1, 1, a]."""
        key = (str(device), atom)
        if key not in self._packed:
            cfg, chan = self.packed()
            scal = torch.as_tensor(cfg, device=device)
            ops = torch.as_tensor(chan, device=device).reshape(6, 1, -1, 1, 1, atom)
            self._packed[key] = (scal, ops)
        return self._packed[key]

    def flags(self) -> tuple:
        """The chain's structure (what the compiled kernel specialises on)."""
        units = tuple(
            None if u is None else (u.alu, u.mul, u.prelu, u.relu) for u in (self.x1, self.x2)
        )
        y = self.y
        ys = None if y is None else (y.mul, y.mul_prelu, y.alu, y.per_element, y.cvt)
        return (self.cacc_shift >= 0, *units, ys)


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


def _srr(x: torch.Tensor, shift: torch.Tensor, in_bits: int, out_bits: int) -> torch.Tensor:
    """:func:`~dlakit.sim.arith.shift_right_round` with the shift a 0-d tensor, so one compiled
    kernel serves every layer (no Python branch on its value)."""
    s = shift.clamp(0, 63)
    half = torch.where(s > 0, 1 << (s - 1).clamp_min(0), 0)
    mag = (x.abs() + half) >> s
    y = torch.where(s > 0, torch.where(x < 0, -mag, mag), x)
    return saturate(torch.where(shift >= in_bits, 0, y), out_bits)


def _cacc(acc: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """:func:`~dlakit.sim.conv.cacc_truncate` with the shift a 0-d tensor."""
    s = shift.clamp(0, 62)
    guide = (acc >> (s - 1).clamp_min(0)) & 1
    lo = (s - 16).clamp_min(0)
    mask = (1 << (s - 1 - lo).clamp_min(0)) - 1
    sticky = ((acc >> lo) & mask) != 0
    up = (guide == 1) & ((acc >= 0) | sticky)
    return saturate(torch.where(s == 0, acc, (acc >> s) + up.to(torch.int64)), 32)


def _x_unit(x, alu: int, alu_op, mul: bool, mul_op, shift, prelu: bool, relu: bool):
    if alu:
        x = (
            x + alu_op
            if alu == 1
            else (torch.maximum(x, alu_op) if alu == 2 else torch.minimum(x, alu_op))
        )
    if not mul:
        y = _srr(x, shift, 49, 32)
    else:
        y = _srr(x * mul_op, shift, 49, 32)
        if prelu:
            y = torch.where(x >= 0, x, y)
    return y.clamp_min(0) if relu else y


def _chain_core(
    x: torch.Tensor, ew: torch.Tensor | None, scal: torch.Tensor, chan: torch.Tensor, flags: tuple
) -> torch.Tensor:
    """The chain on whole int64 tensors; scalars ``scal`` and per-channel operands ``chan``
    ([6, 1, C/a, 1, 1, a]) as :meth:`SdpParams.packed` lays them out; ``flags`` the structure."""
    cacc, x1, x2, y = flags
    x = x.to(torch.int64)
    if cacc:
        x = _cacc(x, scal[0])
    for i, unit in enumerate((x1, x2)):
        if unit is not None:
            alu, mul, prelu, relu = unit
            x = _x_unit(x, alu, chan[2 * i], mul, chan[2 * i + 1], scal[4 + 6 * i], prelu, relu)
    if y is not None:
        mul, prelu, alu, per_element, cvt = y
        if mul:
            prod = _srr(x * chan[4], scal[15], 64, 32)
            x = torch.where(x >= 0, x, prod) if prelu else prod
        if alu:
            if per_element:
                assert ew is not None
                op = ew.to(torch.int64)
                if cvt:
                    op = _srr((op - scal[20]) * scal[21], scal[22], 49, 32)
            else:
                op = chan[5]
            if alu == 1:
                x = saturate(x + op, 32)
            else:
                x = torch.maximum(x, op) if alu == 2 else torch.minimum(x, op)
    x = (x - scal[23]) * scal[24]
    return _srr(x, scal[25], 49, 8).to(torch.int8)


_COMPILED_CORE: list = []


def _core_for(device: torch.device):
    """On CUDA the chain compiles into one fused kernel per chain structure (a pass over memory
    instead of one per operation); elsewhere it runs op by op."""
    if device.type != "cuda":
        return _chain_core
    if not _COMPILED_CORE:
        import torch._dynamo

        # one entry per chain structure, not per layer: shapes and values are kernel arguments
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        _COMPILED_CORE.append(torch.compile(_chain_core, dynamic=True))
    return _COMPILED_CORE[0]


def chain_torch(x: torch.Tensor, params: SdpParams, ew: torch.Tensor | None = None) -> torch.Tensor:
    """The chain on whole int64 tensors; returns the INT8 cube."""
    scal, chan = params.on_device(x.device, x.shape[-1])
    ew = ew.view(torch.int8) if ew is not None else None
    return _core_for(x.device)(x, ew, scal, chan, params.flags())


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
