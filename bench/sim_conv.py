"""Convolution speed of the bit-exact NVDLA simulator vs a float32 PyTorch convolution.

Two layers: the largest nv_small conv trace (replayed from its .cfg) and a ResNet-50-sized layer
(56x56x64 -> 64, 3x3, pad 1) programmed through the Python API. For each: MAC/s of the whole
operation (CDMA reads memory ... SDP writes memory) and of the convolution core alone (im2col +
exact integer GEMM + CACC rounding on tensors already loaded), each as a ratio to
``torch.nn.functional.conv2d`` in float32 on the same device (PyTorch's default backend flags).

    PYTHONPATH=src python bench/sim_conv.py [--device cpu|cuda] [--out FILE]
"""

from __future__ import annotations

import argparse
import platform
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F

from dlakit.paths import shared_dir
from dlakit.sim.conv import ConvGeometry, cacc_truncate, conv_accumulate, conv_geometry
from dlakit.sim.layout import pack_weights, write_feature
from dlakit.sim.nvdla import CONV_UNITS, Nvdla
from dlakit.sim.program import ConvSpec, program_conv
from dlakit.sim.trace import TracePlayer, TraceResult, find_traces, parse_cfg


def _time_together(fns: list, device: torch.device, rounds: int = 15) -> list[float]:
    """Best seconds per call of each function, calls interleaved round by round.

    Interleaving and taking the minimum keeps the comparison fair on a shared, loaded machine.
    """
    best = [float("inf")] * len(fns)
    for fn in fns:
        fn()
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def _rerun(nv: Nvdla) -> None:
    """Enable the pipe again (back to front); the CDMA write runs the operation."""
    for unit in ("SDP", *CONV_UNITS):
        nv.write_reg(unit, "D_OP_ENABLE", OP_EN="ENABLE")


def _conv_params(nv: Nvdla) -> tuple[tuple[int, int, int], tuple[int, int, int, int], ConvGeometry]:
    cdma, csc = nv.view("CDMA"), nv.view("CSC")
    c = cdma["D_DATAIN_SIZE_1"] + 1
    h = cdma.f("D_DATAIN_SIZE_0", "DATAIN_HEIGHT") + 1
    w = cdma.f("D_DATAIN_SIZE_0", "DATAIN_WIDTH") + 1
    k = cdma["D_WEIGHT_SIZE_1"] + 1
    r = csc.f("D_WEIGHT_SIZE_EXT_0", "WEIGHT_HEIGHT_EXT") + 1
    s = csc.f("D_WEIGHT_SIZE_EXT_0", "WEIGHT_WIDTH_EXT") + 1
    geo = conv_geometry(cdma, csc)
    return (c, h, w), (k, c, r, s), geo


def _measure(name: str, nv: Nvdla, device: torch.device) -> dict:
    (c, h, w), wshape, geo = _conv_params(nv)
    k = wshape[0]
    oh, ow = geo.out_hw
    macs = k * oh * ow * c * wshape[2] * wshape[3]
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(-128, 128, (c, h, w), generator=gen).to(device)
    wt = torch.randint(-128, 128, wshape, generator=gen).to(device)
    left, top = geo.pad_top_left[1], geo.pad_top_left[0]
    xf = torch.randn(1, c, h, w, device=device)
    wf = torch.randn(wshape, device=device)
    bottom = max((oh - 1) * geo.stride[0] + (wshape[2] - 1) * geo.dilation[0] + 1 - h - top, 0)
    right = max((ow - 1) * geo.stride[1] + (wshape[3] - 1) * geo.dilation[1] + 1 - w - left, 0)

    def reference() -> torch.Tensor:
        return F.conv2d(
            F.pad(xf, (left, right, top, bottom)), wf, stride=geo.stride, dilation=geo.dilation
        )

    rounds = 15 if macs < 5e8 or device.type == "cuda" else 4
    full, core, ref = _time_together(
        [lambda: _rerun(nv), lambda: cacc_truncate(conv_accumulate(x, wt, geo), 0), reference],
        device,
        rounds,
    )
    return dict(
        name=name,
        shape=f"{c}x{h}x{w} * {k}x{wshape[2]}x{wshape[3]} -> {k}x{oh}x{ow}",
        macs=macs,
        full=full,
        core=core,
        ref=ref,
    )


def largest_trace(device: torch.device) -> tuple[str, Nvdla]:
    best = None
    for cfg in find_traces(shared_dir() / "nvdla-traces" / "nv_small"):
        if not cfg.stem.startswith("dc_"):
            continue
        nv = Nvdla("nv_small", device=device)
        player = TracePlayer(nv, cfg, TraceResult(cfg.stem, cfg))
        for cmd in parse_cfg(cfg):
            player.run(cmd)
        (c, _, _), (k, _, r, s), geo = _conv_params(nv)
        macs = k * geo.out_hw[0] * geo.out_hw[1] * c * r * s
        if best is None or macs > best[0]:
            best = (macs, cfg.stem, nv)
    assert best is not None, "no dc_* trace found (set DLAKIT_SHARED)"
    return best[1], best[2]


def conv3x3_layer(device: torch.device, channels: int = 64, size: int = 56) -> Nvdla:
    """A padded 3x3 convolution ``size x size x channels -> channels`` programmed by the API."""
    nv = Nvdla("nv_small", device=device)
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(-128, 128, (channels, size, size), generator=gen)
    w = torch.randint(-128, 128, (channels, channels, 3, 3), generator=gen)
    write_feature(nv.memory, 0x8000_0000, x)
    nv.memory.write(0x9000_0000, pack_weights(w))
    spec = ConvSpec(
        0x8000_0000,
        0x9000_0000,
        0xA000_0000,
        (channels, size, size),
        (channels, 3, 3),
        pads=(1, 1, 1, 1),
    )
    program_conv(nv, spec)
    return nv


def output_crc(nv: Nvdla, channels: int, size: int = 56) -> int:
    """CRC-32 of a ``conv3x3_layer``'s output surfaces (to compare devices)."""
    return zlib.crc32(nv.memory.read(0xA000_0000, channels * size * size))


def machine(device: torch.device) -> str:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    text = f"{cpu}, {torch.get_num_threads()} torch threads"
    if device.type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(device)}"
    return text + f", torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name, nv = largest_trace(device)
    rows = [_measure(f"trace {name}", nv, device)]
    for label, channels in (("ResNet-50 3x3 layer", 64), ("large layer (VGG-16 conv3)", 256)):
        layer = conv3x3_layer(device, channels)
        rows.append(_measure(label, layer, device))
        if device.type != "cpu":
            cpu = conv3x3_layer(torch.device("cpu"), channels)
            if output_crc(layer, channels) != output_crc(cpu, channels):
                raise SystemExit(f"{label}: output on {device} differs from the CPU result")
    lines = [
        f"### {device.type.upper()}: {machine(device)} ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        "| layer | shape | MACs | sim op GMAC/s | sim conv core GMAC/s | float32 conv2d GMAC/s "
        "| op / float | core / float |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gmacs = [r["macs"] / r[key] / 1e9 for key in ("full", "core", "ref")]
        lines.append(
            f"| {r['name']} | {r['shape']} | {r['macs'] / 1e6:.1f} M "
            + "".join(f"| {g:.2f} " for g in gmacs)
            + f"| {r['full'] / r['ref']:.2f}x | {r['core'] / r['ref']:.2f}x |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with args.out.open("a") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
