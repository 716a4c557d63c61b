"""RUBIK: the data reshape engine (nv_full; nvdla/hw nvdlav1 ``cmod/rubik/NV_NVDLA_rbk.cpp``).

Every mode moves whole 32-byte atoms (32 INT8 or 16 INT16/FP16 elements) or plane lines; no
arithmetic. CONTRACT (deconvolution's de-interleave): input surface ``(sy * SX + sx) * S + s``
at (h, w) goes to output surface ``s`` at row ``h * SY + sy`` (``CONTRACT_STRIDE_1`` apart per
input row, ``DAOUT_LINE_STRIDE`` per ``sy``), column ``w * SX + sx``; S = output surfaces.
SPLIT: feature cube to one plane per channel (``DAOUT_PLANAR_STRIDE`` apart); MERGE: the reverse.
Plane lines are written in whole atoms, zero beyond the cube's width, as the C model's reorder
buffer does.
"""

from __future__ import annotations

import torch

from dlakit.sim.memory import Memory
from dlakit.sim.regs import UnitView

ATOM = 32
_ELEMENTS = {"INT8": 32, "INT16": 16, "FP16": 16}
_TRANS = 2048 // 32  # elements per plane chunk (RUBIK_INTERNAL_BUF_SIZE / 32)


def _atoms(
    mem: Memory,
    base: int,
    surf: torch.Tensor,
    h: torch.Tensor,
    w: torch.Tensor,
    surf_stride: int,
    line_stride: int,
) -> torch.Tensor:
    """Byte addresses [..., 32] of the atoms at (surface, row, column) index tensors."""
    b = torch.arange(ATOM, dtype=torch.int64, device=mem.device)
    return (base + surf * surf_stride + h * line_stride + w * ATOM)[..., None] + b


def run_rubik(mem: Memory, rbk: UnitView) -> None:
    mode = rbk.require("D_MISC_CFG", "RUBIK_MODE", {"CONTRACT", "SPLIT", "MERGE"})
    precision = rbk.require("D_MISC_CFG", "IN_PRECISION", set(_ELEMENTS))
    per_atom = _ELEMENTS[precision]
    bpe = ATOM // per_atom
    width = rbk.f("D_DATAIN_SIZE_0", "DATAIN_WIDTH") + 1
    height = rbk.f("D_DATAIN_SIZE_0", "DATAIN_HEIGHT") + 1
    channels = rbk.f("D_DATAIN_SIZE_1", "DATAIN_CHANNEL") + 1
    out_channels = rbk.f("D_DATAOUT_SIZE_1", "DATAOUT_CHANNEL") + 1
    src = rbk.addr("D_DAIN_ADDR_LOW", "D_DAIN_ADDR_HIGH")
    dst = rbk.addr("D_DAOUT_ADDR_LOW", "D_DAOUT_ADDR_HIGH")
    dev = mem.device
    if mode == "CONTRACT":
        sx = rbk.f("D_DECONV_STRIDE", "DECONV_X_STRIDE") + 1
        sy = rbk.f("D_DECONV_STRIDE", "DECONV_Y_STRIDE") + 1
        s_out = -(-out_channels // per_atom)
        s = torch.arange(s_out, device=dev)[:, None, None, None, None]
        h = torch.arange(height, device=dev)[None, :, None, None, None]
        y = torch.arange(sy, device=dev)[None, None, :, None, None]
        w = torch.arange(width, device=dev)[None, None, None, :, None]
        x = torch.arange(sx, device=dev)[None, None, None, None, :]
        s_in = (y * sx + x) * s_out + s
        src_addr = _atoms(
            mem, src, s_in, h, w, rbk["D_DAIN_SURF_STRIDE"], rbk["D_DAIN_LINE_STRIDE"]
        )
        row = rbk["D_CONTRACT_STRIDE_1"] * h + rbk["D_DAOUT_LINE_STRIDE"] * y
        dst_addr = (dst + s * rbk["D_DAOUT_SURF_STRIDE"] + row + (w * sx + x) * ATOM)[..., None]
        dst_addr = dst_addr + torch.arange(ATOM, dtype=torch.int64, device=dev)
        mem.scatter(dst_addr, mem.gather(src_addr))
        return
    c = torch.arange(channels, device=dev)[:, None, None]
    hh = torch.arange(height, device=dev)[None, :, None]
    chunks = -(-width // _TRANS)
    line_bytes = sum(max(ATOM, min(_TRANS, width - i * _TRANS) * bpe) for i in range(chunks))
    line_bytes = -(-line_bytes // ATOM) * ATOM
    pos = torch.arange(line_bytes // bpe, device=dev)[None, None, :]
    e = torch.arange(bpe, device=dev)
    cube_line = rbk["D_DAIN_LINE_STRIDE"] if mode == "SPLIT" else rbk["D_DAOUT_LINE_STRIDE"]
    cube_surf = rbk["D_DAIN_SURF_STRIDE"] if mode == "SPLIT" else rbk["D_DAOUT_SURF_STRIDE"]
    plane_line = rbk["D_DAOUT_LINE_STRIDE"] if mode == "SPLIT" else rbk["D_DAIN_LINE_STRIDE"]
    plane_stride = rbk["D_DAOUT_PLANAR_STRIDE"] if mode == "SPLIT" else rbk["D_DAIN_PLANAR_STRIDE"]
    cube_base, plane_base = (src, dst) if mode == "SPLIT" else (dst, src)
    valid = pos < width
    wpos = pos.clamp(max=width - 1)
    cube = (
        cube_base
        + (c // per_atom) * cube_surf
        + hh * cube_line
        + wpos * ATOM
        + (c % per_atom) * bpe
    )[..., None] + e
    plane = (plane_base + c * plane_stride + hh * plane_line + pos * bpe)[..., None] + e
    if mode == "SPLIT":
        data = mem.gather(cube)
        data = torch.where(valid[..., None], data, torch.zeros_like(data))
        mem.scatter(plane, data)
    else:
        n = channels if mode == "MERGE" else out_channels
        keep = valid.expand(n, height, -1)
        mem.scatter(cube[keep], mem.gather(plane[keep]))
