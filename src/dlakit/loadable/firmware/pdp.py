"""PDP programming (nvdla/sw ``kmd/firmware/pdp.c``): PDP_RDMA (when the source is in memory)
and PDP from a ``dla_pdp_op_desc``, after the firmware's validation of the descriptor."""

from __future__ import annotations

from dlakit.loadable.firmware.engine import (
    DCUBE_MAX,
    MEM_HW,
    PRECISION_FP16,
    Firmware,
    Group,
    Processor,
)

_PRECISION = ("INT8", "INT16", "FP16")
_POOL = ("POOLING_METHOD_AVERAGE", "POOLING_METHOD_MAX", "POOLING_METHOD_MIN")
_MAX_SPLIT = 64
# recip_kernel_size[fp16][size - 1]: 1/k as 0.16 fixed point, or as an FP17 number (1.0 = 0x7C00)
_RECIP = (
    (0x10000, 0x8000, 0x5555, 0x4000, 0x3333, 0x2AAA, 0x2492, 0x2000),
    (0x7C00, 0x7800, 0x7555, 0x7400, 0x7266, 0x7155, 0x7092, 0x7000),
)


def validate_cubes(fw: Firmware, where: str, src: object, dst: object, mem_type: int) -> None:
    """``validate_data_cube`` (common.c)."""
    for name, cube in (("src_data", src), ("dst_data", dst)):
        dims = (int(cube.width), int(cube.height), int(cube.channel))  # type: ignore[attr-defined]
        if max(dims) > DCUBE_MAX:
            raise fw.fail(f"{where} {name}: {dims[0]}x{dims[1]}x{dims[2]} exceeds {DCUBE_MAX}")
        if int(cube.type) > mem_type:  # type: ignore[attr-defined]
            raise fw.fail(f"{where} {name}.type={cube.type} is not a memory type")  # type: ignore[attr-defined]


class Pdp:
    def set_producer(self, fw: Firmware, group_id: int, rdma_id: int) -> None:
        fw.write("PDP", "S_POINTER", fw.word("PDP", "S_POINTER", PRODUCER=group_id))
        fw.write("PDP_RDMA", "S_POINTER", fw.word("PDP_RDMA", "S_POINTER", PRODUCER=rdma_id))

    def enable(self, fw: Firmware, group: Group) -> None:
        if group.is_rdma_needed:
            fw.write("PDP_RDMA", "D_OP_ENABLE", fw.word("PDP_RDMA", "D_OP_ENABLE", OP_EN="ENABLE"))
        fw.write("PDP", "D_OP_ENABLE", fw.word("PDP", "D_OP_ENABLE", OP_EN="ENABLE"))

    def rdma_check(self, fw: Firmware, group: Group) -> None:
        assert group.surface is not None
        group.is_rdma_needed = int(group.surface.src_data.type) != MEM_HW

    def is_ready(self, fw: Firmware, proc: Processor, group: Group) -> bool:
        return True

    def program(self, fw: Firmware, group: Group) -> None:
        assert group.operation is not None and group.surface is not None
        assert group.op_desc is not None
        op, surf = group.operation, group.surface
        where = f"PDP operation {group.op_desc.index}"
        src, dst = surf.src_data, surf.dst_data
        fw.enable_intr("PDP_DONE_MASK1", "PDP_DONE_MASK0")
        if int(dst.type) == MEM_HW:
            raise fw.fail(f"{where}: the destination has to be memory (MC or CV)")
        validate_cubes(fw, where, src, dst, MEM_HW)
        if int(op.precision) >= len(_PRECISION):
            raise fw.fail(f"{where}: precision={op.precision} is out of range")
        sx, sy = int(op.stride_x), int(op.stride_y)
        if not (1 <= sx <= 8 and 1 <= sy <= 8):
            raise fw.fail(f"{where}: stride {sx}x{sy} is outside 1..8")
        if int(op.split_num) > _MAX_SPLIT:
            raise fw.fail(f"{where}: split_num={op.split_num} exceeds {_MAX_SPLIT}")
        for name in ("pool_width", "pool_height"):
            if int(op[name]) >= 8:
                raise fw.fail(f"{where}: {name}={op[name]} is out of range (0..7)")
        if int(op.pool_mode) >= len(_POOL):
            raise fw.fail(f"{where}: pool_mode={op.pool_mode} is out of range")
        prec = _PRECISION[int(op.precision)]
        in_addr = out_addr = 0
        fly = int(src.type) == MEM_HW
        if not fly:
            if int(src.address) == -1:
                raise fw.fail(f"{where}: src_data has no address (dynamic ROI is not modelled)")
            in_addr = fw.cube_address(src, f"{where} src_data")
        if int(dst.address) != -1:
            out_addr = fw.cube_address(dst, f"{where} dst_data")
        w, wr = fw.write, fw.word
        kw = f"KERNEL_WIDTH_{int(op.pool_width) + 1}"
        kh = f"KERNEL_HEIGHT_{int(op.pool_height) + 1}"

        def partial(first: int, mid: int, last: int, stem: str, reg: str, unit: str) -> int:
            vals = {f"{stem}_FIRST": first, f"{stem}_MID": mid, f"{stem}_LAST": last}
            return wr(unit, reg, **{k: (v - 1 if v else 0) for k, v in vals.items()})

        ram = ("MC", "CV")
        if not fly:
            w("PDP_RDMA", "D_DATA_CUBE_IN_WIDTH", int(src.width) - 1)
            w("PDP_RDMA", "D_DATA_CUBE_IN_HEIGHT", int(src.height) - 1)
            w("PDP_RDMA", "D_DATA_CUBE_IN_CHANNEL", int(src.channel) - 1)
            w("PDP_RDMA", "D_SRC_BASE_ADDR_HIGH", in_addr >> 32)
            w("PDP_RDMA", "D_SRC_BASE_ADDR_LOW", in_addr & 0xFFFFFFFF)
            w("PDP_RDMA", "D_SRC_LINE_STRIDE", int(src.line_stride))
            w("PDP_RDMA", "D_SRC_SURFACE_STRIDE", int(src.surf_stride))
            w("PDP_RDMA", "D_DATA_FORMAT", wr("PDP_RDMA", "D_DATA_FORMAT", INPUT_DATA=prec))
            w(
                "PDP_RDMA",
                "D_SRC_RAM_CFG",
                wr("PDP_RDMA", "D_SRC_RAM_CFG", SRC_RAM_TYPE=ram[int(src.type)]),
            )
            w(
                "PDP_RDMA",
                "D_OPERATION_MODE_CFG",
                wr("PDP_RDMA", "D_OPERATION_MODE_CFG", SPLIT_NUM=int(op.split_num) - 1),
            )
            w(
                "PDP_RDMA",
                "D_POOLING_KERNEL_CFG",
                wr("PDP_RDMA", "D_POOLING_KERNEL_CFG", KERNEL_WIDTH=kw, KERNEL_STRIDE_WIDTH=sx - 1),
            )
            w(
                "PDP_RDMA",
                "D_POOLING_PADDING_CFG",
                wr("PDP_RDMA", "D_POOLING_PADDING_CFG", PAD_WIDTH=int(op.pad_left)),
            )
            w(
                "PDP_RDMA",
                "D_PARTIAL_WIDTH_IN",
                partial(
                    int(op.partial_in_width_first),
                    int(op.partial_in_width_mid),
                    int(op.partial_in_width_last),
                    "PARTIAL_WIDTH_IN",
                    "D_PARTIAL_WIDTH_IN",
                    "PDP_RDMA",
                ),
            )
        elif int(op.split_num) != 1:
            raise fw.fail(f"{where}: on the fly needs split_num 1, not {op.split_num}")
        w("PDP", "D_DATA_CUBE_IN_WIDTH", int(src.width) - 1)
        w("PDP", "D_DATA_CUBE_IN_HEIGHT", int(src.height) - 1)
        w("PDP", "D_DATA_CUBE_IN_CHANNEL", int(src.channel) - 1)
        w("PDP", "D_DATA_CUBE_OUT_WIDTH", int(dst.width) - 1)
        w("PDP", "D_DATA_CUBE_OUT_HEIGHT", int(dst.height) - 1)
        w("PDP", "D_DATA_CUBE_OUT_CHANNEL", int(dst.channel) - 1)
        w(
            "PDP",
            "D_OPERATION_MODE_CFG",
            wr(
                "PDP",
                "D_OPERATION_MODE_CFG",
                POOLING_METHOD=_POOL[int(op.pool_mode)],
                FLYING_MODE="ON_FLYING" if fly else "OFF_FLYING",
                SPLIT_NUM=int(op.split_num) - 1,
            ),
        )
        w(
            "PDP",
            "D_PARTIAL_WIDTH_IN",
            partial(
                int(op.partial_in_width_first),
                int(op.partial_in_width_mid),
                int(op.partial_in_width_last),
                "PARTIAL_WIDTH_IN",
                "D_PARTIAL_WIDTH_IN",
                "PDP",
            ),
        )
        w(
            "PDP",
            "D_PARTIAL_WIDTH_OUT",
            partial(
                int(op.partial_width_first),
                int(op.partial_width_mid),
                int(op.partial_width_last),
                "PARTIAL_WIDTH_OUT",
                "D_PARTIAL_WIDTH_OUT",
                "PDP",
            ),
        )
        w(
            "PDP",
            "D_POOLING_KERNEL_CFG",
            wr(
                "PDP",
                "D_POOLING_KERNEL_CFG",
                KERNEL_WIDTH=kw,
                KERNEL_HEIGHT=kh,
                KERNEL_STRIDE_WIDTH=sx - 1,
                KERNEL_STRIDE_HEIGHT=sy - 1,
            ),
        )
        fp16 = int(op.precision) == PRECISION_FP16
        w("PDP", "D_RECIP_KERNEL_WIDTH", _RECIP[fp16][int(op.pool_width)])
        w("PDP", "D_RECIP_KERNEL_HEIGHT", _RECIP[fp16][int(op.pool_height)])
        pads = wr(
            "PDP",
            "D_POOLING_PADDING_CFG",
            PAD_LEFT=int(op.pad_left),
            PAD_RIGHT=int(op.pad_right),
            PAD_TOP=int(op.pad_top),
            PAD_BOTTOM=int(op.pad_bottom),
        )
        if fp16 and any(int(v) for v in op.padding_value):
            raise fw.fail(f"{where}: FP16 pooling needs zero padding values")
        w("PDP", "D_POOLING_PADDING_CFG", pads)
        for n, value in enumerate(op.padding_value, start=1):
            w("PDP", f"D_POOLING_PADDING_VALUE_{n}_CFG", int(value))
        if not fly:
            w("PDP", "D_SRC_LINE_STRIDE", int(src.line_stride))
            w("PDP", "D_SRC_SURFACE_STRIDE", int(src.surf_stride))
        w("PDP", "D_DST_BASE_ADDR_LOW", out_addr & 0xFFFFFFFF)
        w("PDP", "D_DST_BASE_ADDR_HIGH", out_addr >> 32)
        w("PDP", "D_DST_LINE_STRIDE", int(dst.line_stride))
        w("PDP", "D_DST_SURFACE_STRIDE", int(dst.surf_stride))
        w("PDP", "D_DST_RAM_CFG", wr("PDP", "D_DST_RAM_CFG", DST_RAM_TYPE=ram[int(dst.type)]))
        w("PDP", "D_DATA_FORMAT", wr("PDP", "D_DATA_FORMAT", INPUT_DATA=prec))
