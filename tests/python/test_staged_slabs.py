"""Inputs whose rows (axis 0) are not contiguous, numpy's C order first of all, reach
the general loop (factors outside the 2x2 / 2x2x2 families) through slabs copied with
axis 0 contiguous (src/engine.rs, `Slabs`, `Source::staged`). The copy must hand every
window the same values in the same scan order as reading them in place: mode ties,
float sums and the -0.0 / NaN picks of float min and max depend on that order. Each
case runs the same values in every layout, with one and two threads (slabs of other
widths), and must match the Fortran-order result bit for bit, which in turn is checked
against the spec's models (tests/python/models.py).
"""

import numpy as np
import pytest

import tinybrain_ctypes as tb
from datagen import assert_exact, labels, random_values, with_layout
from test_properties import check_against_model

pytestmark = pytest.mark.usefixtures("lib")

# (shape, factor): 2-D to 4-D, every edge window clipped somewhere, slabs of one or
# several output coordinates.
GEOMETRIES = [
    ((37, 35, 11), (3, 3, 1)),
    ((37, 35, 11), (1, 2, 3)),
    ((29, 40, 9), (3, 1, 7)),
    ((61, 47), (3, 3)),
    ((61, 47), (1, 5)),
    ((13, 9, 7, 5), (3, 1, 2, 3)),
]
STAGED_LAYOUTS = ("C", "neg", "step", "perm")


def call(op, img, factor, num_mips, sparse=False):
    if op == "segmentation":
        got = tb.downsample_segmentation(img, factor, sparse=sparse, num_mips=num_mips)
    else:
        got = getattr(tb, "downsample_with_" + op)(img, factor, num_mips=num_mips)
    return got if isinstance(got, list) else [got]


def check_layouts(op, plain, factor, num_mips, threads, sparse=False):
    """Every staged layout, at one and two threads, bit for bit the Fortran result;
    that result against the model, as the property tests compare them (integer means
    of later mips within a float64 rounding of the model's)."""
    threads(1)
    fortran = call(op, np.asfortranarray(plain), factor, num_mips, sparse)
    case = {"factor": factor, "num_mips": num_mips, "sparse": sparse}
    check_against_model(op, case, fortran, plain)
    rng = np.random.default_rng(7)
    for layout in STAGED_LAYOUTS:
        img = with_layout(plain, layout, rng)
        assert not img.flags.f_contiguous and np.array_equal(img, plain, equal_nan=plain.dtype.kind == "f")
        for count in (1, 2):
            threads(count)
            got = call(op, img, factor, num_mips, sparse)
            for k, (g, f) in enumerate(zip(got, fortran), start=1):
                assert_exact(g, f, what=f"{layout}, {count} threads, mip {k}")


@pytest.mark.parametrize("shape, factor", GEOMETRIES)
@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint64", "float32"])
@pytest.mark.parametrize("sparse", [False, True])
def test_mode_ties_break_the_same_in_every_layout(shape, factor, dtype, sparse, threads):
    # Three labels (0 among them for sparse mode): ties in most windows.
    plain = labels(np.random.default_rng(sum(shape)), shape, dtype, 3)
    check_layouts("segmentation", plain, factor, 1, threads, sparse=sparse)


@pytest.mark.parametrize("shape, factor", GEOMETRIES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_float_means_sum_in_the_same_order_in_every_layout(shape, factor, dtype, threads):
    # Both signs, nine decades: the rounding of each sum shows its order.
    plain = random_values(np.random.default_rng(len(shape)), shape, dtype)
    check_layouts("averaging", plain, factor, 2, threads)


@pytest.mark.parametrize("shape, factor", GEOMETRIES)
@pytest.mark.parametrize("op", ["max_pooling", "min_pooling"])
def test_float_extremes_pick_the_same_zero_and_nan_in_every_layout(shape, factor, op, threads):
    # NaN, -0.0 and 0.0, infinities: which of two equal or unordered values a window
    # keeps depends on the order it meets them.
    plain = labels(np.random.default_rng(3), shape, "float32", 8)
    check_layouts(op, plain, factor, 2, threads)


@pytest.mark.parametrize("shape, factor", GEOMETRIES[:3])
@pytest.mark.parametrize("dtype", ["uint8", "int16"])
def test_integer_means_of_several_mips_in_every_layout(shape, factor, dtype, threads):
    # Later mips are float64 means of float64 means, in scan order.
    plain = random_values(np.random.default_rng(11), shape, dtype)
    check_layouts("averaging", plain, factor, 3, threads)


def test_slabs_of_one_output_row_each(threads):
    # 240 x 200 x 40 float64 in C order: one output coordinate along axis 1 needs
    # 240 * 3 * 40 * 8 bytes, above the 512 KiB a slab holds, so each slab is one.
    plain = random_values(np.random.default_rng(5), (240, 200, 40), "float64")
    threads(1)
    fortran = call("averaging", np.asfortranarray(plain), (3, 3, 2), 1)
    for count in (1, 2):
        threads(count)
        got = call("averaging", np.ascontiguousarray(plain), (3, 3, 2), 1)
        assert_exact(got[0], fortran[0], what=f"{count} threads")
