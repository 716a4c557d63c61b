"""One simulated NVDLA: register file, memory image, and the operations OP_ENABLE launches.

Programming follows the hardware: write registers (CSB address or unit/register name), then set
``D_OP_ENABLE`` on every unit of an operation. When the last unit of an operation is enabled the
operation runs to completion at once, the units' OP_ENABLE clear and their GLB interrupt status
bits rise (``S_INTR_STATUS``, one bit per unit and group).

Operations: SDP from memory (SDP + SDP_RDMA), convolution (CDMA, CSC, CMAC_A/B, CACC feeding SDP
on the fly, + SDP_RDMA when SDP reads operands), PDP from memory (PDP + PDP_RDMA), CDP (CDP +
CDP_RDMA), RUBIK (RBK) and BDMA (``CFG_OP`` queues a transfer, ``CFG_LAUNCHn`` runs the queue).
A finished group moves the unit's consumer pointer (``S_POINTER.CONSUMER``) to the other group;
each unit of an operation takes part with its own next group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from dlakit.errors import DlakitError
from dlakit.hw import Register, load_register_map
from dlakit.sim import cdp, conv, pdp, rubik, sdp
from dlakit.sim.bdma import BdmaQueue
from dlakit.sim.lut import LutTables
from dlakit.sim.memory import Memory
from dlakit.sim.regs import NotModelled, RegisterFile, UnitView
from dlakit.targets import load_target

CONV_UNITS = ("CACC", "CMAC_A", "CMAC_B", "CSC", "CDMA")
# Hardware trees whose INT8 datapath is modelled: v2 (nv_small) is checked against the official
# traces; v1 (nv_full) shares the arithmetic and is checked byte for byte against the integer
# reference on compiled models (no v1 traces are at hand).
SIMULATED_TREES = ("v1", "v2")
# GLB S_INTR_STATUS field stem raised when a unit finishes (CMAC and RDMAs raise none).
_DONE_FIELDS = {
    "SDP": "SDP_DONE_STATUS",
    "CDP": "CDP_DONE_STATUS",
    "PDP": "PDP_DONE_STATUS",
    "CACC": "CACC_DONE_STATUS",
    "CDMA": ("CDMA_DAT_DONE_STATUS", "CDMA_WT_DONE_STATUS"),
    "RBK": "RUBIK_DONE_STATUS",
    "BDMA": "BDMA_DONE_STATUS",
}

# Precision fields an INT8-only configuration (no INT16/FP16 MACs: NvdlaSpec.atomic_k_int16 is
# None) must leave at INT8; the units model the 16-bit paths of nv_full.
_PRECISION_FIELDS = {
    "SDP": ("D_DATA_FORMAT", "OUT_PRECISION"),
    "SDP_RDMA": ("D_FEATURE_MODE_CFG", "IN_PRECISION"),
    "CDMA": ("D_MISC_CFG", "IN_PRECISION"),
    "PDP": ("D_DATA_FORMAT", "INPUT_DATA"),
    "PDP_RDMA": ("D_DATA_FORMAT", "INPUT_DATA"),
    "CDP": ("D_DATA_FORMAT", "INPUT_DATA_TYPE"),
    "CDP_RDMA": ("D_DATA_FORMAT", "INPUT_DATA"),
}


@dataclass(frozen=True)
class Launch:
    """One operation the last OP_ENABLE started: its kind, the register group each unit's
    registers are read from, and the units it uses.

    ``units`` are the units whose OP_ENABLE it consumes (and whose done interrupts it raises);
    ``pdp_on_the_fly``: SDP hands its output to PDP instead of writing it.
    """

    kind: str  # "conv" | "sdp" | "pdp" | "cdp" | "rubik"
    groups: tuple[tuple[str, int], ...]
    units: tuple[str, ...]
    pdp_on_the_fly: bool = False

    def group(self, unit: str) -> int:
        """The register group ``unit`` takes part with (0 for a unit the operation leaves out)."""
        return dict(self.groups).get(unit, 0)


# Runs a launched operation instead of the definition (e.g. the replay layer's decoder).
Engine = Callable[["Nvdla", Launch], None]


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DlakitError("--device cuda: no CUDA device is available here")
    return dev


class Nvdla:
    """A register-level NVDLA of one hardware configuration (``nv_small`` ...)."""

    def __init__(
        self,
        target: str = "nv_small",
        device: str | torch.device | None = "cpu",
        memory: Memory | None = None,
        engine: Engine | None = None,
    ) -> None:
        tgt = load_target(target)
        if tgt.nvdla is None:
            raise DlakitError(f"target {target!r} is not an open NVDLA configuration")
        if tgt.nvdla.hw_tree not in SIMULATED_TREES:
            raise NotModelled(
                f"target {target} (NVDLA hw tree {tgt.nvdla.hw_tree}) is not modelled: the "
                f"simulator covers hw trees {', '.join(SIMULATED_TREES)}; the register "
                "map of every tree is available from dlakit.hw.load_register_map"
            )
        self.target = tgt
        self.config = tgt.nvdla
        self.engines = tgt.engines
        self.atom = tgt.nvdla.memory_atomic
        self.device = resolve_device(device)
        self.regmap = load_register_map(self.config.hw_tree)
        self.regs = RegisterFile(self.regmap)
        self.memory = memory if memory is not None else Memory(self.device)
        self.luts = {"SDP": LutTables(), "CDP": LutTables()}
        self.enabled: set[tuple[str, int]] = set()
        self.consumer: dict[str, int] = {}  # hardware S_POINTER.CONSUMER per unit
        self.bdma = BdmaQueue()
        self.operations = 0
        # None: every operation runs the unit models below (the definition).
        self.engine = engine

    # -- CSB access -------------------------------------------------------------------------
    def write(self, address: int, value: int) -> None:
        """A CSB register write at byte ``address``."""
        self._write(self.regmap.at(address), value)

    def write_reg(self, unit: str, reg: str, value: int | None = None, **fields: int | str) -> None:
        """Write ``unit.reg`` as a whole ``value`` or from named ``fields``."""
        r = self.regmap.register(unit, reg)
        self._write(r, r.encode(**fields) if value is None else value)

    def write_named(self, name: str, value: int) -> None:
        """Write by the trace spelling ``NVDLA_UNIT.REG_0``."""
        self._write(self.regmap.lookup(name), value)

    def read_reg(self, unit: str, reg: str) -> int:
        return self._read(self.regmap.register(unit, reg))

    def read_named(self, name: str) -> int:
        return self._read(self.regmap.lookup(name))

    def view(self, unit: str, group: int = 0) -> UnitView:
        return self.regs.view(unit, group)

    def _read(self, r: Register) -> int:
        if r.unit == "CDMA" and r.name == "S_CBUF_FLUSH_STATUS":
            return 1  # the convolution buffer is always flushed here
        if r.name == "S_POINTER" and "CONSUMER" in r.fields:
            consumer = r.fields["CONSUMER"]
            return (self.regs.load(r) & ~consumer.mask) | (
                self.consumer.get(r.unit, 0) << consumer.lsb
            )
        return self.regs.load(r)

    def _write(self, r: Register, value: int) -> None:
        if r.unit == "GLB" and r.name == "S_INTR_STATUS":
            self._glb_status(self._glb_status() & ~value)  # write one to clear
            return
        group = self.regs.store(r, value)
        if r.name == "S_LUT_ACCESS_CFG" and r.unit in self.luts:
            self.luts[r.unit].select(r.decode(value))
        elif r.name == "S_LUT_ACCESS_DATA" and r.unit in self.luts:
            self.luts[r.unit].write(value & 0xFFFF)
        elif r.name == "D_OP_ENABLE" and value & 1:
            self.enabled.add((r.unit, group))
            self._check_precision(r.unit, group)
            self._launch(group)
        elif r.unit == "BDMA" and value & 1:
            self._bdma(r.name)

    # -- interrupts ---------------------------------------------------------------------------
    def _glb_status(self, value: int | None = None) -> int:
        reg = self.regmap.register("GLB", "S_INTR_STATUS")
        if value is not None:
            self.regs.store(reg, value)
        return self.regs.load(reg)

    def _raise_done(self, unit: str, group: int) -> None:
        stems = _DONE_FIELDS.get(unit, ())
        reg = self.regmap.register("GLB", "S_INTR_STATUS")
        status = self._glb_status()
        for stem in (stems,) if isinstance(stems, str) else stems:
            status |= 1 << reg.field(f"{stem}{group}").lsb
        self._glb_status(status)

    def take_interrupt(self, unit: str | None = None) -> bool:
        """True (and clear it) if ``unit`` has a done interrupt pending in either group.

        ``unit`` is a unit (``SDP``, ``CDMA``), one of CDMA's two interrupts (``CDMA_DAT``,
        ``CDMA_WT``), or None for any unit's.
        """
        reg = self.regmap.register("GLB", "S_INTR_STATUS")
        stems = [s for v in _DONE_FIELDS.values() for s in ((v,) if isinstance(v, str) else v)]
        if unit is not None:
            own = _DONE_FIELDS.get(unit, ())
            own = (own,) if isinstance(own, str) else own
            stems = [s for s in stems if s in own or s == f"{unit}_DONE_STATUS"]
            if not stems:
                raise DlakitError(f"unit {unit} raises no interrupt")
        status = self._glb_status()
        for stem in stems:
            for group in (0, 1):
                bit = 1 << reg.field(f"{stem}{group}").lsb
                if status & bit:
                    self._glb_status(status & ~bit)
                    return True
        return False

    # -- operations ---------------------------------------------------------------------------
    def _on(self, unit: str, group: int) -> bool:
        return (unit, group) in self.enabled

    def _finish(self, units: tuple[str, ...], group: int) -> None:
        op_en = self.regmap.register  # same name in every unit
        for unit in units:
            self.enabled.discard((unit, group))
            self.regs.store(op_en(unit, "D_OP_ENABLE"), 0, group)
            self._raise_done(unit, group)
            self.consumer[unit] = 1 - group
        self.operations += 1

    def _consumer(self, unit: str) -> int:
        """The register group a unit executes next: its consumer pointer's when that group is
        enabled (units work through their groups in turn), else the other one if that is. Real
        hardware would wait for the consumer group; the fallback keeps programs that reuse one
        group (the compiler's) running."""
        group = self.consumer.get(unit, 0)
        if not self._on(unit, group) and self._on(unit, 1 - group):
            return 1 - group
        return group

    def _ready(self, unit: str) -> bool:
        return self._on(unit, self._consumer(unit))

    def _launch(self, group: int) -> None:
        """Run every operation whose units all have their next group enabled."""
        c = self._consumer
        if self._ready("SDP"):
            self._launch_sdp()
        if self._ready("PDP"):
            p = self.regs.view("PDP", c("PDP"))
            # On the fly, PDP runs as part of the SDP operation that feeds it.
            if p.enum("D_OPERATION_MODE_CFG", "FLYING_MODE") == "OFF_FLYING" and self._ready(
                "PDP_RDMA"
            ):
                self._check_engine("pdp", "PDP.D_OP_ENABLE")
                self._run(self._launch_of("pdp", ("PDP", "PDP_RDMA")))
        if self._ready("CDP") and self._ready("CDP_RDMA"):
            self._check_engine("cdp", "CDP.D_OP_ENABLE")
            self._run(self._launch_of("cdp", ("CDP", "CDP_RDMA")))
        if self._ready("RBK"):
            self._check_engine("rubik", "RBK.D_OP_ENABLE")
            self._run(self._launch_of("rubik", ("RBK",)))

    def _launch_of(self, kind: str, units: tuple[str, ...], pdp_on_the_fly: bool = False) -> Launch:
        """The operation of ``units`` now: each unit's registers in the group it executes next;
        the convolution pipe's in CACC's (as the unit models read them)."""
        pipe = self._consumer("CACC")
        read = (*units, "SDP_RDMA") if kind == "conv" else units
        groups = {u: pipe if u in CONV_UNITS else self._consumer(u) for u in read}
        return Launch(kind, tuple(groups.items()), units, pdp_on_the_fly)

    def _finish_units(self, units: tuple[str, ...]) -> None:
        """Finish an operation of units each in its own current group."""
        groups = {u: self._consumer(u) for u in units}
        for unit, group in groups.items():
            self._finish((unit,), group)
        self.operations -= len(units) - 1

    def _bdma(self, reg: str) -> None:
        """BDMA has no register groups: CFG_OP queues a transfer, CFG_LAUNCHn runs them."""
        if reg not in ("CFG_OP", "CFG_LAUNCH0", "CFG_LAUNCH1"):
            return
        self._check_engine("bdma", f"BDMA.{reg}")
        if reg == "CFG_OP":
            self.bdma.push(self.regs.view("BDMA", 0))
            return
        self.bdma.launch(self.memory)
        self._raise_done("BDMA", int(reg[-1]))
        self.operations += 1

    def _launch_sdp(self) -> None:
        """SDP from memory or after the convolution pipe, optionally into PDP on the fly. Each
        unit takes part with the group it executes next (CACC hands SDP its results whatever
        groups the two are in)."""
        s = self.regs.view("SDP", self._consumer("SDP"))
        tail: tuple[str, ...] = ()
        if sdp.to_pdp(s):
            if not self._ready("PDP"):
                return
            pdp_view = self.regs.view("PDP", self._consumer("PDP"))
            if pdp_view.enum("D_OPERATION_MODE_CFG", "FLYING_MODE") != "ON_FLYING":
                raise NotModelled(
                    "SDP.D_FEATURE_MODE_CFG.OUTPUT_DST=PDP with "
                    "PDP.D_OPERATION_MODE_CFG.FLYING_MODE=OFF_FLYING is inconsistent"
                )
            self._check_engine("pdp", "PDP.D_OP_ENABLE")
            tail = ("PDP",)
        if s.enum("D_FEATURE_MODE_CFG", "FLYING_MODE") == "OFF":
            if self._ready("SDP_RDMA"):
                self._run(self._launch_of("sdp", ("SDP", "SDP_RDMA", *tail), bool(tail)))
        elif all(self._ready(u) for u in CONV_UNITS) and (
            not sdp.needs_rdma(s) or self._ready("SDP_RDMA")
        ):
            self._check_engine("conv", "CDMA.D_OP_ENABLE")
            used = ("SDP_RDMA",) if self._ready("SDP_RDMA") else ()
            self._run(self._launch_of("conv", ("SDP", *CONV_UNITS, *used, *tail), bool(tail)))

    def _run(self, launch: Launch) -> None:
        """Execute one launched operation (through ``self.engine``), then finish its units."""
        if self.engine is None:
            self.execute(launch)
        else:
            self.engine(self, launch)
        self._finish_units(launch.units)

    def execute(self, launch: Launch) -> None:
        """The definition: each unit model reads this register file and ``self.memory``."""
        g = launch.group

        def v(unit: str) -> UnitView:
            return self.regs.view(unit, g(unit))

        pdp_view = v("PDP") if launch.pdp_on_the_fly else None
        if launch.kind == "conv":
            conv.run_conv(
                self, g("CACC"), pdp_view, g("SDP"), g("SDP_RDMA"), "SDP_RDMA" in launch.units
            )
        elif launch.kind == "sdp":
            sdp.run_sdp_from_memory(
                self.memory, v("SDP"), v("SDP_RDMA"), self.luts["SDP"], self.atom, pdp_view
            )
        elif launch.kind == "pdp":
            pdp.run_pdp(self.memory, v("PDP"), v("PDP_RDMA"), self.atom)
        elif launch.kind == "cdp":
            cdp.run_cdp(self.memory, v("CDP"), v("CDP_RDMA"), self.luts["CDP"], self.atom)
        else:
            rubik.run_rubik(self.memory, v("RBK"))

    def _check_precision(self, unit: str, group: int) -> None:
        if self.config.atomic_k_int16 is not None or unit not in _PRECISION_FIELDS:
            return
        reg, field = _PRECISION_FIELDS[unit]
        self.view(unit, group).require(
            reg, field, {"INT8"}, f"{self.target.name} is INT8-only: it has no 16-bit MACs"
        )

    def _check_engine(self, engine: str, where: str) -> None:
        if not self.engines.get(engine, False):
            raise NotModelled(f"{where}: target {self.target.name} has no {engine} engine")
