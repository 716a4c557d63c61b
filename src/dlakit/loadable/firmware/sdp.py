"""SDP programming (nvdla/sw ``kmd/firmware/sdp.c``): SDP_RDMA and SDP from a
``dla_sdp_op_desc`` (X1, X2, Y operations, output converter, LUT) and its five cubes."""

from __future__ import annotations

from dlakit.loadable.firmware.engine import MEM_HW, Firmware, Group, Processor
from dlakit.loadable.firmware.lut import lut_ready, update_lut

_PRECISION = ("INT8", "INT16", "FP16")
# map_proc_precision[dst][src] (sdp.c)
_PROC_PRECISION = (
    ("INT8", "INT8", "FP16"),
    ("INT8", "INT16", "FP16"),
    ("INT8", "INT16", "FP16"),
)
_OP_NONE, _OP_MUL, _OP_ADD, _OP_BOTH = range(4)
_PER_LAYER = 0
_DATA_USE = ("MUL", "MUL", "ALU", "BOTH")  # map_op_type
_DATA_SIZE = ("ONE_BYTE", "TWO_BYTE", "TWO_BYTE")  # map_element_size
_DATA_MODE = ("PER_ELEMENT", "PER_KERNEL", "PER_ELEMENT")  # map_op_mode
_ALU = ("MAX", "MIN", "SUM", "EQL")
_ACT_RELU, _ACT_LUT, _ACT_PRELU = 1, 2, 3
# X1 -> BS (B-RDMA), X2 -> BN (N-RDMA), Y -> EW (E-RDMA)
_STAGES = (("x1", "BS", "BRDMA", "x1_data"), ("x2", "BN", "NRDMA", "x2_data"))


def _pick(fw: Firmware, table: tuple[str, ...], index: int, what: str) -> str:
    if not 0 <= index < len(table):
        raise fw.fail(f"{what}={index} is out of range (0..{len(table) - 1})")
    return table[index]


def _ram(fw: Firmware, unit: str, reg: str, fname: str, mem_type: int, what: str) -> int:
    """map_ram_type: MC or CV (a HW cube indexes past the table, as in the firmware)."""
    names = ("MC", "CV")
    if mem_type > 1:
        return 0
    return fw.enum(unit, reg, fname, names[mem_type])


def _rdma_enabled(op: object) -> bool:
    return bool(op.enable) and int(op.mode) != _PER_LAYER  # type: ignore[attr-defined]


class Sdp:
    def set_producer(self, fw: Firmware, group_id: int, rdma_id: int) -> None:
        fw.write("SDP", "S_POINTER", fw.word("SDP", "S_POINTER", PRODUCER=group_id))
        fw.write("SDP_RDMA", "S_POINTER", fw.word("SDP_RDMA", "S_POINTER", PRODUCER=rdma_id))

    def enable(self, fw: Firmware, group: Group) -> None:
        if group.is_rdma_needed:
            fw.write("SDP_RDMA", "D_OP_ENABLE", fw.word("SDP_RDMA", "D_OP_ENABLE", OP_EN="ENABLE"))
        fw.write("SDP", "D_OP_ENABLE", fw.word("SDP", "D_OP_ENABLE", OP_EN="ENABLE"))

    def rdma_check(self, fw: Firmware, group: Group) -> None:
        assert group.operation is not None and group.surface is not None
        op, surf = group.operation, group.surface
        fly = int(surf.src_data.type) == MEM_HW
        group.is_rdma_needed = (not fly) or any(
            _rdma_enabled(x) for x in (op.x1_op, op.x2_op, op.y_op)
        )

    def is_ready(self, fw: Firmware, proc: Processor, group: Group) -> bool:
        return lut_ready(proc, group)

    def program(self, fw: Firmware, group: Group) -> None:
        assert group.operation is not None and group.surface is not None
        assert group.op_desc is not None
        op, surf = group.operation, group.surface
        where = f"SDP operation {group.op_desc.index}"
        atom = fw.config.atom_size
        w, wr = fw.write, fw.word
        src, dst = surf.src_data, surf.dst_data
        fly = int(src.type) == MEM_HW
        out_dma = int(dst.type) != MEM_HW
        src_prec = _pick(fw, _PRECISION, int(op.src_precision), f"{where} src_precision")
        dst_prec = _pick(fw, _PRECISION, int(op.dst_precision), f"{where} dst_precision")
        proc_prec = _PROC_PRECISION[int(op.dst_precision)][int(op.src_precision)]
        src_addr = dst_addr = 0
        if not fly:
            if int(src.address) == -1:
                raise fw.fail(f"{where}: src_data has no address (dynamic ROI is not modelled)")
            src_addr = fw.cube_address(src, f"{where} src_data")
            fw.check_align(src_addr, atom, f"{where} source address")
        if out_dma:
            dst_addr = fw.cube_address(dst, f"{where} dst_data")
            fw.check_align(dst_addr, atom, f"{where} destination address")
        lut = None
        if int(op.lut_index) >= 0:
            group.lut_index = int(op.lut_index)
            lut = fw.read_lut(int(op.lut_index))
        ops = {"x1": op.x1_op, "x2": op.x2_op, "y": op.y_op}
        rdma_on = {
            k: bool(v.enable) and int(v.type) != _OP_NONE and int(v.mode) != _PER_LAYER
            for k, v in ops.items()
        }
        addrs = {}
        for key, cube in (("x1", surf.x1_data), ("x2", surf.x2_data), ("y", surf.y_data)):
            if rdma_on[key]:
                addrs[key] = fw.cube_address(cube, f"{where} {key}_data")
                fw.check_align(addrs[key], atom, f"{where} {key} operand address")
        # Disable on-the-fly and every RDMA first (commit 98051a3: the engine stalls otherwise).
        w("SDP_RDMA", "D_FEATURE_MODE_CFG", wr("SDP_RDMA", "D_FEATURE_MODE_CFG", FLYING_MODE="OFF"))
        for dma in ("BRDMA", "NRDMA", "ERDMA"):
            w(
                "SDP_RDMA",
                f"D_{dma}_CFG",
                wr("SDP_RDMA", f"D_{dma}_CFG", **{f"{dma}_DISABLE": "YES"}),
            )
        w(
            "SDP_RDMA",
            "D_FEATURE_MODE_CFG",
            wr(
                "SDP_RDMA",
                "D_FEATURE_MODE_CFG",
                FLYING_MODE="ON" if fly else "OFF",
                WINOGRAD="ON" if int(op.conv_mode) == 1 else "OFF",
                IN_PRECISION=src_prec,
                OUT_PRECISION=dst_prec,
                PROC_PRECISION=proc_prec,
                BATCH_NUMBER=int(op.batch_num) - 1,
            ),
        )
        if group.is_rdma_needed:
            w("SDP_RDMA", "D_DATA_CUBE_WIDTH", int(src.width) - 1)
            w("SDP_RDMA", "D_DATA_CUBE_HEIGHT", int(src.height) - 1)
            w("SDP_RDMA", "D_DATA_CUBE_CHANNEL", int(src.channel) - 1)
            if not fly:
                w("SDP_RDMA", "D_SRC_BASE_ADDR_LOW", src_addr & 0xFFFFFFFF)
                w("SDP_RDMA", "D_SRC_BASE_ADDR_HIGH", src_addr >> 32)
                w("SDP_RDMA", "D_SRC_LINE_STRIDE", int(src.line_stride))
                w("SDP_RDMA", "D_SRC_SURFACE_STRIDE", int(src.surf_stride))
                w(
                    "SDP_RDMA",
                    "D_SRC_DMA_CFG",
                    _ram(fw, "SDP_RDMA", "D_SRC_DMA_CFG", "SRC_RAM_TYPE", int(src.type), where),
                )
            for key, stem, dma, cube_name in (*_STAGES, ("y", "EW", "ERDMA", "y_data")):
                x = ops[key]
                cube = surf[cube_name]
                cfg = f"D_{dma}_CFG"
                w(
                    "SDP_RDMA",
                    cfg,
                    wr(
                        "SDP_RDMA",
                        cfg,
                        **{
                            f"{dma}_DISABLE": "NO" if rdma_on[key] else "YES",
                            f"{dma}_DATA_USE": _pick(
                                fw, _DATA_USE, int(x.type), f"{where} {key}.type"
                            ),
                            f"{dma}_DATA_SIZE": _pick(
                                fw, _DATA_SIZE, int(x.precision), f"{where} {key}.precision"
                            ),
                            f"{dma}_DATA_MODE": _pick(
                                fw, _DATA_MODE, int(x.mode), f"{where} {key}.mode"
                            ),
                            f"{dma}_RAM_TYPE": _ram(
                                fw, "SDP_RDMA", cfg, f"{dma}_RAM_TYPE", int(cube.type), where
                            ),
                        },
                    ),
                )
                if rdma_on[key]:
                    addr = addrs[key]
                    w("SDP_RDMA", f"D_{stem}_BASE_ADDR_LOW", addr & 0xFFFFFFFF)
                    w("SDP_RDMA", f"D_{stem}_BASE_ADDR_HIGH", addr >> 32)
                    w("SDP_RDMA", f"D_{stem}_LINE_STRIDE", int(cube.line_stride))
                    w("SDP_RDMA", f"D_{stem}_SURFACE_STRIDE", int(cube.surf_stride))
        if lut is not None:
            update_lut(fw, "SDP", lut, int(op.src_precision))
        w("SDP", "D_DATA_CUBE_WIDTH", int(src.width) - 1)
        w("SDP", "D_DATA_CUBE_HEIGHT", int(src.height) - 1)
        w("SDP", "D_DATA_CUBE_CHANNEL", int(src.channel) - 1)
        if out_dma:
            w("SDP", "D_DST_BASE_ADDR_HIGH", dst_addr >> 32)
            w("SDP", "D_DST_BASE_ADDR_LOW", dst_addr & 0xFFFFFFFF)
            w("SDP", "D_DST_LINE_STRIDE", int(dst.line_stride))
            w("SDP", "D_DST_SURFACE_STRIDE", int(dst.surf_stride))
        for key, stem, _, _ in _STAGES:
            self._x_stage(fw, stem, ops[key], where)
        self._y_stage(fw, op.y_op, where)
        w(
            "SDP",
            "D_FEATURE_MODE_CFG",
            wr(
                "SDP",
                "D_FEATURE_MODE_CFG",
                FLYING_MODE="ON" if fly else "OFF",
                OUTPUT_DST="PDP" if int(dst.type) == MEM_HW else "MEM",
                WINOGRAD="ON" if int(op.conv_mode) == 1 else "OFF",
                BATCH_NUMBER=int(op.batch_num) - 1,
            ),
        )
        w(
            "SDP",
            "D_DST_DMA_CFG",
            _ram(fw, "SDP", "D_DST_DMA_CFG", "DST_RAM_TYPE", int(dst.type), where),
        )
        if int(op.batch_num) > 1:
            w("SDP", "D_DST_BATCH_STRIDE", int(op.batch_stride))
        w(
            "SDP",
            "D_DATA_FORMAT",
            wr("SDP", "D_DATA_FORMAT", PROC_PRECISION=proc_prec, OUT_PRECISION=dst_prec),
        )
        w("SDP", "D_CVT_OFFSET", int(op.out_cvt.offset))
        w("SDP", "D_CVT_SCALE", int(op.out_cvt.scale))
        w("SDP", "D_CVT_SHIFT", int(op.out_cvt.truncate))

    def _x_stage(self, fw: Firmware, stem: str, x: object, where: str) -> None:
        """X1 (BS) or X2 (BN): bypasses, ALU/MUL sources and operands, truncate."""
        w, wr = fw.write, fw.word
        kind = int(x.type)  # type: ignore[attr-defined]
        enable = bool(x.enable)  # type: ignore[attr-defined]
        per_layer = int(x.mode) == _PER_LAYER  # type: ignore[attr-defined]
        act = int(x.act)  # type: ignore[attr-defined]
        alu = _pick(fw, _ALU, int(x.alu_type), f"{where} {stem} alu_type")  # type: ignore[attr-defined]
        yn = ("YES", "NO")
        w(
            "SDP",
            f"D_DP_{stem}_CFG",
            wr(
                "SDP",
                f"D_DP_{stem}_CFG",
                **{
                    f"{stem}_BYPASS": yn[enable],
                    f"{stem}_ALU_BYPASS": yn[kind not in (_OP_MUL, _OP_NONE)],
                    f"{stem}_ALU_ALGO": alu,
                    f"{stem}_MUL_BYPASS": yn[kind not in (_OP_ADD, _OP_NONE)],
                    f"{stem}_MUL_PRELU": ("NO", "YES")[act == _ACT_PRELU],
                    f"{stem}_RELU_BYPASS": yn[act == _ACT_RELU],
                },
            ),
        )
        if not enable:
            return
        src = "REG" if per_layer else "MEM"
        if kind in (_OP_ADD, _OP_BOTH):
            w(
                "SDP",
                f"D_DP_{stem}_ALU_CFG",
                wr(
                    "SDP",
                    f"D_DP_{stem}_ALU_CFG",
                    **{f"{stem}_ALU_SRC": src, f"{stem}_ALU_SHIFT_VALUE": int(x.shift_value)},
                ),
            )  # type: ignore[attr-defined]
        if per_layer:
            w("SDP", f"D_DP_{stem}_ALU_SRC_VALUE", int(x.alu_operand))  # type: ignore[attr-defined]
            w("SDP", f"D_DP_{stem}_MUL_SRC_VALUE", int(x.mul_operand))  # type: ignore[attr-defined]
        # The MUL truncate applies whether or not MUL is bypassed.
        w(
            "SDP",
            f"D_DP_{stem}_MUL_CFG",
            wr(
                "SDP",
                f"D_DP_{stem}_MUL_CFG",
                **{f"{stem}_MUL_SRC": src, f"{stem}_MUL_SHIFT_VALUE": int(x.truncate)},
            ),
        )  # type: ignore[attr-defined]

    def _y_stage(self, fw: Firmware, y: object, where: str) -> None:
        w, wr = fw.write, fw.word
        kind = int(y.type)  # type: ignore[attr-defined]
        enable = bool(y.enable)  # type: ignore[attr-defined]
        per_layer = int(y.mode) == _PER_LAYER  # type: ignore[attr-defined]
        act = int(y.act)  # type: ignore[attr-defined]
        yn = ("YES", "NO")
        w(
            "SDP",
            "D_DP_EW_CFG",
            wr(
                "SDP",
                "D_DP_EW_CFG",
                EW_BYPASS=yn[enable],
                EW_ALU_BYPASS=yn[kind not in (_OP_MUL, _OP_NONE)],
                EW_ALU_ALGO=_pick(fw, _ALU, int(y.alu_type), f"{where} y alu_type"),  # type: ignore[attr-defined]
                EW_MUL_BYPASS=yn[kind not in (_OP_ADD, _OP_NONE)],
                EW_MUL_PRELU=("NO", "YES")[act == _ACT_PRELU],
                EW_LUT_BYPASS=yn[act == _ACT_LUT],
            ),
        )
        if not enable:
            return
        src = "REG" if per_layer else "MEM"
        cvt = y.cvt  # type: ignore[attr-defined]
        for kind_name, ops, operand, c in (
            ("ALU", (_OP_ADD, _OP_BOTH), "alu_operand", cvt.alu_cvt),
            ("MUL", (_OP_MUL, _OP_BOTH), "mul_operand", cvt.mul_cvt),
        ):
            if kind not in ops:
                continue
            w(
                "SDP",
                f"D_DP_EW_{kind_name}_CFG",
                wr(
                    "SDP",
                    f"D_DP_EW_{kind_name}_CFG",
                    **{
                        f"EW_{kind_name}_SRC": src,
                        f"EW_{kind_name}_CVT_BYPASS": yn[bool(c.enable)],
                    },
                ),
            )
            if per_layer:
                w("SDP", f"D_DP_EW_{kind_name}_SRC_VALUE", int(getattr(y, operand)))
            else:
                w("SDP", f"D_DP_EW_{kind_name}_CVT_OFFSET_VALUE", int(c.offset))
                w("SDP", f"D_DP_EW_{kind_name}_CVT_SCALE_VALUE", int(c.scale))
                w("SDP", f"D_DP_EW_{kind_name}_CVT_TRUNCATE_VALUE", int(c.truncate))
        w("SDP", "D_DP_EW_TRUNCATE_VALUE", int(y.truncate))  # type: ignore[attr-defined]
