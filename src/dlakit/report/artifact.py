"""Render what ``compile`` built, what a ``.dla`` artifact holds (``inspect``), what ``run`` did."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from dlakit import __version__
from dlakit.report.console import Output

if TYPE_CHECKING:
    from dlakit.nvdla.compiler import Compiled
    from dlakit.run.runner import RunStats

COMPILE_SCHEMA = "dlakit.compile"
RUN_SCHEMA = "dlakit.run"
SCHEMA_VERSION = 1

# The per-operation listing: one aligned line per operation, the long fields (the operation's
# name, its tiling) last and unpadded, so names stay whole and the listing greps and diffs well.
_OP_HEADER = (
    "#",
    "segment",
    "kind",
    "in CxHxW",
    "out CxHxW",
    "kernel",
    "writes",
    "src",
    "dst",
    "operation",
    "tiling",
)
_SHORT = 7  # fields before src/dst: what the narrow layout keeps on an operation's first line


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB ({n:,} bytes)"


def _shape(v: Any) -> str:
    return "x".join(str(d) for d in v) if v else ""


def _tile(op: dict[str, Any]) -> str:
    t = op.get("tile")
    if not t or t.get("of", 1) == 1:
        return ""
    return (
        f"k{t['kernels_from']} r{t['rows_from']} c{t['channels_from']} "
        f"(of {t['of']}), banks {t['data_banks']}+{t['weight_banks']}"
    )


# --- compile ------------------------------------------------------------------------------------


def render_compile(comp: Compiled, name: str, path: Path, target: str, output: Output) -> None:
    st = comp.stats
    t = Table(title=f"{name} -> {path} ({target})", show_header=False)
    t.add_row("segments", f"{st['dla_segments']} DLA, {st['fallback_segments']} fallback")
    kinds = ", ".join(f"{v} {k}" for k, v in st["ops_by_kind"].items() if v)
    t.add_row("hardware operations", f"{st['hardware_ops']} ({kinds})")
    til = st["tiling"]
    t.add_row(
        "CBUF tiling",
        f"{til['split_layers']} of {til['layers']} convolutions split; "
        f"{til['operations']} conv operations, at most {til['max_tiles']} for one layer",
    )
    t.add_row("register writes", f"{st['register_writes']:,}")
    t.add_row("constants (weights, operands)", _mib(len(comp.constants)))
    t.add_row("activations (after reuse)", _mib(comp.act_bytes))
    t.add_row("peak memory", _mib(comp.peak_bytes))
    if "compile_seconds" in st:
        t.add_row("compile time", f"{st['compile_seconds']:.2f} s")
    output.print(t)
    _render_off_dla(st, output)


def _render_off_dla(stats: dict[str, Any], output: Output) -> None:
    """Every node the compiled model does not run on the simulated DLA, with its reason."""
    off = stats.get("fallback_nodes", {})
    fp16 = stats.get("fp16_on_fallback", [])
    if not off and not fp16:
        return
    t = Table(title="Not on the DLA (the rules `dlakit check` shows)")
    t.add_column("node", overflow="fold")
    t.add_column("op")
    t.add_column("rule: why", overflow="fold")
    for node, info in off.items():
        t.add_row(node, info["op"], f"{info['rule']}: {info['message']}")
    for layer in fp16:
        t.add_row(layer, "", "FP16 on the DLA: runs in FP32 on the fallback (no FP16 datapath yet)")
    output.print(t)


def compile_json(comp: Compiled, model: str, path: Path, target: str) -> dict[str, Any]:
    return {
        "schema": COMPILE_SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "dlakit_version": __version__,
        "model": model,
        "target": target,
        "artifact": str(path),
        "stats": comp.stats,
        "memory": {
            "constants_bytes": len(comp.constants),
            "activations_bytes": comp.act_bytes,
            "peak_bytes": comp.peak_bytes,
        },
    }


# --- inspect ------------------------------------------------------------------------------------


def manifest_json(doc: dict[str, Any]) -> dict[str, Any]:
    """The manifest with each operation's register writes replaced by their count."""
    doc = copy.deepcopy(doc)
    for seg in doc["segments"]:
        for op in seg.get("ops", []):
            op["registers"] = len(op["registers"])
    return doc


def find_registers(doc: dict[str, Any], name: str) -> list[str] | None:
    for seg in doc["segments"]:
        for op in seg.get("ops", []):
            if op["name"] == name:
                return list(op["registers"])
    return None


def render_manifest(artifact: Path, doc: dict[str, Any], output: Output) -> None:
    mem, st = doc["memory"], doc["stats"]
    head = Table(title=f"{artifact} ({doc['format']} v{doc['version']})", show_header=False)
    head.add_row("model / target", f"{doc['model']} / {doc['target']}")
    head.add_row("inputs", ", ".join(doc["inputs"]))
    head.add_row("outputs", ", ".join(doc["outputs"]))
    head.add_row("segments", f"{st['dla_segments']} DLA, {st['fallback_segments']} host")
    head.add_row("hardware operations", str(st["hardware_ops"]))
    head.add_row(
        "memory",
        f"activations {mem['activations']['size']:,} B at 0x{mem['activations']['base']:x}, "
        f"constants {mem['constants']['size']:,} B at 0x{mem['constants']['base']:x}, "
        f"peak {mem['peak_bytes']:,} B",
    )
    output.print(head)


def _op_rows(doc: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    n = 0
    for seg in doc["segments"]:
        if seg["kind"] == "fallback":
            rows.append(("", seg["name"], "fallback", "", "", "", "", "", "",
                         ", ".join(seg["layers"]), ""))  # fmt: skip
            continue
        for op in seg["ops"]:
            memory = op.get("memory", {})
            rows.append((str(n), seg["name"], op["kind"], _shape(op.get("in")),
                         _shape(op.get("out")), _shape(op.get("kernel")),
                         str(len(op["registers"])), memory.get("src", ""), memory.get("dst", ""),
                         op["name"], _tile(op)))  # fmt: skip
            n += 1
    return rows


def _aligned(rows: list[tuple[str, ...]], count: int) -> list[str]:
    """The first ``count`` fields of each row padded to one width per field."""
    widths = [max(len(r[i]) for r in rows) for i in range(count)]
    return ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)) for r in rows]


def render_ops(doc: dict[str, Any], output: Output, wide: bool = False) -> None:
    """Every hardware operation, one line each; where that is wider than the terminal (and
    without --wide), its name, addresses and tiling go on a second, indented line."""
    rows = [_OP_HEADER, *_op_rows(doc)]
    heads = _aligned(rows, len(_OP_HEADER) - 2)
    lines = [f"{h}  {r[-2]}  {r[-1]}".rstrip() for h, r in zip(heads, rows, strict=True)]
    if wide or max(len(line) for line in lines) <= output.console.width:
        for line in lines:
            output.line(line)
        return
    firsts = _aligned([r[:_SHORT] for r in rows], _SHORT)
    for first, r in zip(firsts, rows, strict=True):
        src, dst, name, tiling = r[_SHORT:]
        moves = f"{src} -> {dst}" if src or dst else ""
        output.line(first.rstrip())
        output.line("    " + "  ".join(v for v in (name, moves, tiling) if v))


# --- run ----------------------------------------------------------------------------------------


def run_table(title: str, stats: RunStats) -> Table:
    t = Table(title=title, show_header=False)
    t.add_row("hardware operations run", f"{stats.operations:,}")
    t.add_row(
        "time",
        f"{stats.seconds:.2f} s (DLA {stats.dla_seconds:.2f} s, host "
        f"{stats.fallback_seconds:.2f} s)",
    )
    t.add_row("images/s", f"{stats.images_per_second:.2f}")
    return t


def add_comparison(t: Table, comparison: dict[str, Any]) -> None:
    """The --compare rows: accuracy against the FP32 model."""
    if comparison.get("top1") is not None:
        fp32, dla = comparison["top1"]["fp32"], comparison["top1"]["dla"]
        t.add_row("top-1 FP32 / DLA", f"{100 * fp32:.2f}% / {100 * dla:.2f}%")
    t.add_row("top-1 agreement with FP32", f"{100 * comparison['agreement']:.2f}%")
    for name, out in comparison["outputs"].items():
        t.add_row(f"{name}: cosine / SQNR", f"{out['cosine']:.4f} / {out['sqnr_db']:.1f} dB")


def run_json(
    artifact: Path,
    source: str,
    device: str,
    stats: RunStats,
    comparison: dict[str, Any] | None,
    hardware_operations: int,
) -> dict[str, Any]:
    """Schema dlakit.run (docs/artifact.md, "Running it")."""
    return {
        "schema": RUN_SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "dlakit_version": __version__,
        "artifact": str(artifact),
        "data": source,
        "device": device,
        "images": stats.images,
        "batch": stats.batch,
        "seconds": stats.seconds,
        "images_per_second": stats.images_per_second,
        "hardware_operations": hardware_operations,
        "operations": stats.operations,
        "dla_seconds": stats.dla_seconds,
        "fallback_seconds": stats.fallback_seconds,
        "top1_agreement": None if comparison is None else comparison["agreement"],
        "compare": comparison,
    }
