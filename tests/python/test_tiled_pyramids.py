"""Means of several mips with a factor outside the 2x2 / 2x2x2 families carry each mip's
exact means (float64, or sums and counts) into the next. The library builds such a
pyramid a box at a time (src/tiles.rs): boxes of the last mip, cut along the input's
outermost axes, each computed from the input under it, at multiples of factor^mips, so
every box's mips are exactly its share of the whole volume's. These volumes are large
enough to be cut on one thread (over 256 KiB of kept state in mip 1), or only on
several (cut for balance), with sizes that leave the last box along each axis short.
Each result is checked against the spec's model (tests/python/models.py, as the
property tests check it), and must be bit for bit the same at 1, 2 and 3 threads (other
cuts), in other input layouts (boxes cut along other axes), and into outputs laid out
in C order (boxes that are not contiguous in them, written through a copy).
"""

import numpy as np
import pytest

import tinybrain_ctypes as tb
from datagen import assert_exact, random_values, with_layout
from models import mip_shape
from test_properties import check_against_model

pytestmark = pytest.mark.usefixtures("lib")

# (shape, factor, mips), and whether one thread cuts it (f64 state, 8 bytes a voxel).
GEOMETRIES = [
    ((331, 301, 3), (3, 3, 1), 3),  # mip 1: 111x101x3 f64 = 269 KB: cut along z
    ((97, 89, 61), (3, 1, 2), 3),  # 33x89x31 = 728 KB: cut along z, 8 units of 8 slices
    ((4001, 131), (5, 3), 2),  # 801x44 = 282 KB: cut along y, the last box 11 rows
    ((41, 37, 19, 3), (3, 3, 1, 1), 2),  # small: cut only on several threads
    ((1201, 97, 2), (3, 3, 1), 2),  # f64 211 KB (cut by several threads), 16-byte sparse state 422 KB
]
INPUT_LAYOUTS = ("F", "C", "neg", "perm")


def average(img, factor, num_mips, sparse, out_order=None):
    out = None
    if out_order is not None:
        out = [np.empty(mip_shape(img.shape, factor, k), img.dtype, order=out_order) for k in range(1, num_mips + 1)]
    got = tb.downsample_with_averaging(img, factor, num_mips=num_mips, sparse=sparse, out=out)
    return got if isinstance(got, list) else [got]


def check_every_cut(plain, factor, num_mips, sparse, threads):
    threads(1)
    reference = average(np.asfortranarray(plain), factor, num_mips, sparse)
    case = {"factor": factor, "num_mips": num_mips, "sparse": sparse}
    check_against_model("averaging", case, reference, plain)
    rng = np.random.default_rng(3)
    runs = [(layout, None) for layout in INPUT_LAYOUTS] + [("F", "C")]
    for layout, out_order in runs:
        img = with_layout(plain, layout, rng)
        for count in (1, 2, 3):
            threads(count)
            got = average(img, factor, num_mips, sparse, out_order)
            for k, (g, r) in enumerate(zip(got, reference), start=1):
                what = f"{layout} input, outputs {out_order or 'F'}, {count} threads, mip {k}"
                assert_exact(g, r, what=what)


@pytest.mark.parametrize("shape, factor, num_mips", GEOMETRIES)
@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint32", "int64", "float32", "float64"])
def test_dense_means_of_means_are_the_same_in_boxes(shape, factor, num_mips, dtype, threads):
    plain = random_values(np.random.default_rng(sum(shape)), shape, dtype)
    check_every_cut(plain, factor, num_mips, False, threads)


@pytest.mark.parametrize("shape, factor, num_mips", GEOMETRIES)
@pytest.mark.parametrize("dtype", ["uint8", "int32", "float32"])
def test_sparse_means_are_the_same_in_boxes(shape, factor, num_mips, dtype, threads):
    plain = random_values(np.random.default_rng(len(shape)), shape, dtype)
    # Zeros in runs and whole windows: boxes with empty windows and with none.
    rng = np.random.default_rng(11)
    plain[rng.random(shape) < 0.4] = 0
    plain[: shape[0] // 3] = 0
    check_every_cut(plain, factor, num_mips, True, threads)
