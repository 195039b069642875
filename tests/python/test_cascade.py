"""The one-pass paths of the 2x2 / 2x2x2 families (src/cascade.rs) and striding on
volumes large enough to be cut into many tiles, against the numpy reference models.
Tiles are whole lines; a tile grows along one more axis to 1 MiB of input
(`TILE_BYTES`), but no further than that axis's extent, so most of these volumes are
one tile per plane (or per 2^mips planes), and only planes over 1 MiB are also cut
across their lines.

The property tests cover every rule on small arrays, which always fit one tile; these
cases cross tile boundaries on odd sizes at every level, in every way a line can run:
along the first factor axis (Fortran order), along a later factor axis (C order with
the factor on the last axis), and along an axis that is not a factor axis (C order
with the factor on the first axes: the block's values then come from 4 or 8 lines).
Every case is also checked to give the same bits with 1 and 2 threads.
"""

import numpy as np
import pytest

import models
import subject
import tinybrain_ctypes as tb
from datagen import assert_close, assert_exact, assert_mips, assert_values, labels, random_values, sparsify

pytestmark = pytest.mark.usefixtures("lib")

# (shape, factor): odd sizes on every axis, large enough for several tiles per axis.
GEOMETRIES = [
    ((301, 259, 5), (2, 2, 1)),  # line along axis 0, a factor axis (the fast path)
    ((67, 301, 21), (2, 2, 2)),
    ((9, 131, 263), (1, 2, 2)),  # axis 0 is not a factor axis
    ((131, 5, 263), (2, 1, 2)),  # the second factor axis is 2 apart from the first
    ((35, 33, 31, 3), (2, 2, 2, 1)),  # a channel axis
    ((2053, 517, 2), (2, 2, 1)),  # planes over 1 MiB even in u8: tiles cut across lines
    ((517, 1031), (2, 2)),  # C order: output lines of 516 go out transposed in chunks
]
LAYOUTS = ["F", "C", "neg"]
CASES = [
    ("averaging", "uint8", False),
    ("averaging", "int16", False),
    ("averaging", "uint16", False),
    ("averaging", "int32", False),  # exact mean in i64, divided by a shift
    ("averaging", "int64", False),  # 66-bit sums in two u64 halves (SplitSum, SplitMean)
    ("averaging", "uint64", False),  # the same, unsigned
    ("averaging", "int8", True),  # negative sums divided in f64
    ("averaging", "float32", False),
    ("averaging", "uint8", True),  # count and sum packed in u32 (1 mip) or u64
    ("averaging", "uint16", True),  # packed in u64
    ("averaging", "float64", True),
    ("averaging", "int64", True),  # SparseSplitSum: chunks of small sums in f64, others in lanes
    ("averaging", "uint64", True),
    ("segmentation", "uint64", False),
    ("segmentation", "uint32", True),
    ("max_pooling", "float32", False),
    ("min_pooling", "int8", False),
    ("striding", "uint16", False),
]


def layout(arr, name):
    if name == "F":
        return np.asfortranarray(arr)
    if name == "C":
        return np.ascontiguousarray(arr)
    flipped = np.flip(np.flip(arr).copy())  # every axis reversed in memory
    assert all(s < 0 for s, n in zip(flipped.strides, flipped.shape) if n > 1)
    return flipped


def make(op, dtype, shape, sparse, seed):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if op == "segmentation":
        img = labels(rng, shape, dtype, 5)
    else:
        img = random_values(rng, shape, dtype)
        if dtype.kind == "f" and op != "averaging":
            img[rng.random(shape) < 0.05] = np.nan
    if op == "averaging" and dtype.kind in "iu" and dtype.itemsize == 8:
        # Patches of small values among the full-range ones, so that a line's chunks
        # of 32 sparse means (SparseSplitMean for one mip, SparseSplitMeans for more)
        # take both ways: only small sums (f64), or a large one among them (f64 lanes
        # with AVX2, else DIV). Where axis 0 is long enough, x in [128, 256) is small
        # throughout: whole chunks of small sums at mips 1 and 2 of 2x2 factors.
        index = np.indices(shape)
        small = ((index[0] // 16 + index[1] // 4) % 2 == 0) | ((index[0] >= 128) & (index[0] < 256))
        low = 0 if dtype.kind == "u" else -1000
        img[small] = rng.integers(low, 1000, size=int(small.sum())).astype(dtype)
    if sparse:
        img = sparsify(rng, img, 0.5)
    return img


def check(op, plain, factor, num_mips, sparse, got):
    expected = models.run(op, plain, factor, num_mips, sparse)
    if op == "averaging" and plain.dtype.kind == "f":
        scale = float(np.abs(plain).max())
        rtol = 1e-6 if plain.dtype == np.float32 else 1e-12
        assert_mips(got, expected, assert_close, rtol=rtol, scale=scale)
    elif op in ("min_pooling", "max_pooling"):
        assert_mips(got, expected, assert_values)
    else:
        assert_mips(got, expected, assert_exact)


@pytest.mark.parametrize("geometry", range(len(GEOMETRIES)))
@pytest.mark.parametrize("op,dtype,sparse", CASES)
@pytest.mark.parametrize("num_mips", [1, 3])
def test_many_tiles_match_the_model(geometry, op, dtype, sparse, num_mips, threads):
    shape, factor = GEOMETRIES[geometry]
    plain = make(op, dtype, shape, sparse, seed=geometry * 100 + num_mips)
    results = {}
    for name in LAYOUTS:
        img = layout(plain, name)
        for count in (1, 2):
            threads(count)
            results[name, count] = subject.run(op, img, factor, num_mips, sparse)
    first = results["F", 1]
    check(op, plain, factor, num_mips, sparse, first)
    for key, got in results.items():
        assert_mips(got, first, assert_exact)  # same bits for any layout and thread count


@pytest.mark.parametrize("op,dtype,sparse", CASES)
def test_tiny_volumes(op, dtype, sparse):
    """Every shape up to 3x3x3 under 2x2x2 and 2x2, 1 to 4 mips (more mips than halvings)."""
    for shape in np.ndindex(3, 3, 3):
        shape = tuple(s + 1 for s in shape)
        plain = make(op, dtype, shape, sparse, seed=sum(shape))
        for factor in ((2, 2, 2), (2, 2, 1), (1, 2, 2)):
            for num_mips in (1, 4):
                got = subject.run(op, layout(plain, "F"), factor, num_mips, sparse)
                check(op, plain, factor, num_mips, sparse, got)


def output_buffers(shape, factor, num_mips, dtype, name):
    """Caller-allocated outputs laid out as `name`: C order (written in another order
    than the input's lines), or every axis reversed inside a buffer twice as long on
    axis 0 (negative strides, not contiguous)."""
    outs = []
    for mip in range(1, num_mips + 1):
        mip_shape = tb.mip_shape(shape, factor, mip)
        if name == "C":
            outs.append(np.zeros(mip_shape, dtype, order="C"))
        else:
            padded = (2 * mip_shape[0],) + tuple(mip_shape[1:])
            outs.append(np.zeros(padded, dtype, order="F")[::-2][(slice(None),) + (slice(None, None, -1),) * (len(shape) - 1)])
    return outs


@pytest.mark.parametrize("geometry", range(len(GEOMETRIES)))
@pytest.mark.parametrize("op,dtype,sparse", CASES)
@pytest.mark.parametrize("out_layout", ["C", "reversed"])
def test_output_layouts(geometry, op, dtype, sparse, out_layout, threads):
    """Outputs whose fastest axis is not the input's line axis are written a tile level at
    a time in their own order; every input layout must give the same bits into them."""
    shape, factor = GEOMETRIES[geometry]
    num_mips = 2
    plain = make(op, dtype, shape, sparse, seed=geometry * 7 + 1)
    expected = subject.run(op, layout(plain, "F"), factor, num_mips, sparse)
    check(op, plain, factor, num_mips, sparse, expected)
    for name in LAYOUTS:
        for count in (1, 2):
            out = output_buffers(shape, factor, num_mips, np.dtype(dtype), out_layout)
            threads(count)
            subject.run(op, layout(plain, name), factor, num_mips, sparse, out=out)
            assert_mips(out, expected, assert_exact)


def test_fresh_large_outputs_on_two_threads(threads):
    """Outputs of 8 MiB or more, freshly allocated, which the threads of a call back with
    memory before the kernels run (src/populate.rs): every voxel as numpy computes it
    here, with 1 and 2 threads, and the same into caller outputs filled with junk. Not
    `check`: its model sums in Python objects, minutes at this size; even sizes leave
    no padded edge, so four strided slices are the whole rule."""
    rng = np.random.default_rng(11)
    img = np.asfortranarray(rng.integers(0, 65536, size=(1024, 1024, 20), dtype=np.uint16))
    wide = img.astype(np.uint32)
    want = ((wide[0::2, 0::2] + wide[1::2, 0::2] + wide[0::2, 1::2] + wide[1::2, 1::2]) // 4).astype(np.uint16)
    assert want.nbytes >= 8 << 20
    for count in (2, 1):
        threads(count)
        fresh = subject.run("averaging", img, (2, 2, 1))
        junk = np.asfortranarray(np.full(want.shape, 0xBEEF, dtype=np.uint16))
        subject.run("averaging", img, (2, 2, 1), out=[junk])
        np.testing.assert_array_equal(fresh[0] if isinstance(fresh, list) else fresh, want)
        np.testing.assert_array_equal(junk, want)


@pytest.mark.parametrize("dtype", ["uint8", "uint64"])
def test_striding_c_order_inputs_over_many_tasks(dtype, threads):
    """Striding of a C-order input into Fortran-order outputs goes through tiles
    transposed in cache, handed out as 512 KiB tasks (src/kernels/stride.rs): volumes
    of many tasks, ragged tiles on both of a tile's axes and a ragged last task, on 1,
    2 and 3 threads, against numpy's strided slices (the definition of striding)."""
    shape = (300, 700, 130) if dtype == "uint8" else (130, 300, 70)
    rng = np.random.default_rng(13)
    img = np.ascontiguousarray(rng.integers(0, 2**63, size=shape, dtype=np.uint64).astype(dtype))
    want = [np.asfortranarray(img[::2, ::2]), np.asfortranarray(img[::4, ::4])]
    assert want[0].nbytes >= 10 * (512 << 10)
    for count in (1, 2, 3):
        threads(count)
        got = subject.run("striding", img, (2, 2, 1), num_mips=2)
        assert_mips(got, want, assert_exact)
