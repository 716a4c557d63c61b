"""CBUF tiling geometry and constant layouts, against independent rules."""

import numpy as np
import pytest

from dlakit.errors import DlakitError
from dlakit.nvdla.images import pack_operands, pack_weights
from dlakit.nvdla.tiling import ConvShape, entry_per_slice, split_tiles
from dlakit.sim.layout import weight_offsets
from dlakit.targets import load_target

SMALL = load_target("nv_small").nvdla
FULL = load_target("nv_full").nvdla


def _shape(c, h, w, k, r=3, stride=1, pad=1, dil=1):
    out_h = (h + 2 * pad - dil * (r - 1) - 1) // stride + 1
    out_w = (w + 2 * pad - dil * (r - 1) - 1) // stride + 1
    return ConvShape(c, h, w, k, r, r, (stride, stride), (dil, dil), (pad, pad, pad, pad),
                     out_h, out_w)  # fmt: skip


def test_cbuf_sizes_come_from_the_target_data():
    assert SMALL.cbuf_bytes == 128 * 1024 and FULL.cbuf_bytes == 512 * 1024


@pytest.mark.parametrize(
    ("cfg", "channels", "width", "entries"),
    [
        (SMALL, 55, 24, 7 * 24),  # official trace dc_24x33x55: D_ENTRY_PER_SLICE = 167 = 168 - 1
        (SMALL, 8, 10, 10),
        (FULL, 64, 10, 10),  # two 32-byte atoms share one 64-byte entry
        (FULL, 32, 10, 5),  # one atom: half an entry per pixel
        (FULL, 96, 10, 15),
    ],
)
def test_entry_per_slice(cfg, channels, width, entries):
    assert entry_per_slice(channels, width, cfg) == entries


@pytest.mark.parametrize(
    "shape",
    [
        _shape(64, 64, 64, 64, stride=2),  # rows
        _shape(64, 32, 32, 256),  # kernels
        _shape(64, 7, 7, 128, r=7, pad=0),  # FC as a 7x7 conv
        _shape(128, 56, 56, 128, dil=2, pad=2),  # both, dilated
        _shape(16, 20, 20, 16, r=5, pad=2),  # fits
    ],
)
def test_tiles_cover_the_output_once_and_read_the_right_rows(shape):
    tiles = split_tiles(shape, load_target("nv_small"), "t")
    seen = np.zeros((shape.kernels, shape.out_h), dtype=int)
    for t in tiles:
        assert t.data_banks + t.weight_banks <= SMALL.cbuf_banks
        assert t.k0 % SMALL.k_quantum == 0
        seen[t.k0 : t.k0 + t.kernels, t.oh0 : t.oh0 + t.out_rows] += 1
        # Input rows this tile's outputs read, clipped to the cube, plus the padding it adds.
        first = t.oh0 * shape.stride[0] - shape.pads[0]
        last = (t.oh0 + t.out_rows - 1) * shape.stride[0] - shape.pads[0]
        last += (shape.r - 1) * shape.dilation[0]
        assert t.ih0 == max(first, 0) and t.ih0 + t.in_rows == min(last + 1, shape.height)
        assert t.pad_top == max(-first, 0)
        assert t.pad_bottom == max(last + 1 - shape.height, 0)
        rows_bytes = t.in_rows * entry_per_slice(shape.channels, shape.width, SMALL) * 8
        assert rows_bytes <= t.data_banks * SMALL.bank_bytes
    assert (seen == 1).all()


def test_a_layer_that_fits_is_one_operation():
    assert len(split_tiles(_shape(16, 20, 20, 16), load_target("nv_small"), "t")) == 1


def test_a_row_too_wide_for_the_cbuf_is_refused():
    with pytest.raises(DlakitError, match="does not fit the nv_small convolution buffer"):
        split_tiles(_shape(4096, 4, 64, 8), load_target("nv_small"), "wide")


@pytest.mark.parametrize(
    ("k", "c", "r", "s"),
    [(25, 55, 5, 5), (8, 8, 1, 1), (41, 3, 2, 3), (5, 3, 1, 1), (64, 16, 3, 3)],
)
def test_weight_image_matches_the_simulators_layout(k, c, r, s):
    """The compiler's packer (numpy loops) against the simulator's address formula (checked on
    the official dc traces)."""
    w = np.random.default_rng(k).integers(-127, 128, size=(k, c, r, s)).astype(np.int8)
    blob = np.frombuffer(pack_weights(w, 8, 8), dtype=np.int8)
    offsets = weight_offsets(k, c, r, s, 8, 8).numpy()
    assert np.array_equal(blob[offsets], w)
    assert len(blob) % 128 == 0 and len(blob) >= w.size


def test_operand_table_interleaves_alu_and_mul():
    blob = pack_operands(np.array([1, -2]), np.array([300, 4]), 8)
    table = np.frombuffer(blob, dtype="<i2").reshape(8, 2)
    assert table[:2].tolist() == [[1, 300], [-2, 4]] and not table[2:].any()
    assert len(pack_operands(np.array([5, 6, 7]), None, 8)) == 16
