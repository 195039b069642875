"""The chunk-independence rule (README "Chunked and distributed pyramids").

A chunk that starts at a multiple of tb_chunk_alignment(factor, num_mips) =
factor**num_mips on every axis, and whose size is a multiple of it or that ends at
the volume's edge, gives exactly the mips of the same region of the whole volume:
mip k of the chunk is mip k of the whole volume at offset start // factor**k. This
holds for every method (averaging incl. sparse and tinybrain's integer-truncation
cadence, mode incl. sparse, min, max, striding), every dtype (floats included) and
every factor.

Every test here cuts a random volume into such chunks (irregular sizes, the last one
on an axis usually shorter), downsamples each chunk on its own as a view of the
volume (no copy), pastes the chunk mips side by side and compares them, bit for
bit, with one call on the whole volume.
"""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinybrain_ctypes as tb
from datagen import (
    ALL_DTYPES,
    assert_exact,
    labels,
    random_values,
    sparsify,
)

pytestmark = pytest.mark.usefixtures("lib")

# (name, sparse)
METHODS = [
    ("averaging", False),
    ("averaging", True),
    ("segmentation", False),
    ("segmentation", True),
    ("min_pooling", False),
    ("max_pooling", False),
    ("striding", False),
]
METHOD_IDS = [m + ("-sparse" if s else "") for m, s in METHODS]

# (shape, factor, num_mips): every factor family, cadence resets, odd edges.
CASES = [
    ((37, 29, 5), (2, 2, 1), 3),  # 2x2, alignment 8
    ((70, 33), (2, 2), 5),  # 2-D; mip 5 comes after the 2x2 accumulator reset at mip 4
    ((133, 70, 3), (2, 2, 1), 6),  # alignment 64; 8/16-bit 2x2 reset at mip 4 in the chunk
    ((33, 30, 9), (1, 2, 2), 3),  # 2x2 on axes 1 and 2
    ((35, 21, 19), (2, 2, 2), 3),  # 2x2x2, alignment 8
    ((70, 40, 66), (2, 2, 2), 6),  # 16-bit 2x2x2 cadence: reset after mip 5
    ((515, 513, 2), (2, 2, 2), 9),  # 8-bit 2x2x2 cadence: reset after mip 8; alignment 512
    ((45, 10, 10), (2, 1, 1), 4),  # factor 2 on one axis (clipped windows)
    ((31, 23, 11), (3, 3, 1), 2),  # alignment 9
    ((50, 47, 9), (3, 2, 1), 2),  # mixed factors: alignment (9, 4, 1)
    ((70, 66, 10), (4, 4, 1), 2),  # alignment 16
    ((40, 37, 35), (4, 4, 4), 2),
    ((101,), (3,), 3),  # 1-D, alignment 27
    ((26, 20, 14, 2), (2, 2, 2, 1), 2),  # channels: each independent
    ((20, 18, 6, 3), (2, 2, 1, 1), 3),
    ((18, 17, 16, 9), (2, 2, 2, 2), 2),  # 2x2x2x2: the general (exact-mode) path
    ((11, 13, 7), (1, 1, 1), 3),  # all-ones factor: alignment 1, any chunking
]
CASE_IDS = ["x".join(map(str, s)) + "-f" + "".join(map(str, f)) + f"-m{n}" for s, f, n in CASES]


def downsample(method, sparse, img, factor, num_mips):
    if method == "averaging":
        return tb.downsample_with_averaging(img, factor, num_mips, sparse=sparse)
    if method == "segmentation":
        return tb.downsample_segmentation(img, factor, sparse=sparse, num_mips=num_mips)
    return getattr(tb, "downsample_with_" + method)(img, factor, num_mips)


def volume(rng, method, sparse, shape, dtype):
    """Data that exercises the method: full-range values for averaging, striding,
    min and max (NaN sprinkled into floats), few labels for mode (ties, NaN, -0.0),
    many zeros and zero blocks for sparse."""
    dtype = np.dtype(dtype)
    if method == "segmentation":
        vol = labels(rng, shape, dtype, 3 if sparse else 4)
    else:
        vol = random_values(rng, shape, dtype)
        if method in ("min_pooling", "max_pooling") and dtype.kind == "f":
            vol[rng.random(shape) < 0.02] = np.nan
    if sparse:
        vol = sparsify(rng, vol, 0.5)
        corner = tuple(slice(0, max(1, s // 3)) for s in shape)
        vol[corner] = 0  # whole windows of zeros: mips of 0
    return vol


def chunk_bounds(rng, size, align, regular=False):
    """[start, stop) intervals covering 0..size: each starts at a multiple of
    align, each but the last is a multiple of align long (at least 4 voxels: 1 to 3
    times the smallest such multiple, or always that multiple if regular), the last
    ends at the edge."""
    unit = align * -(-4 // align)
    bounds, start = [], 0
    while start < size:
        step = unit if regular else unit * int(rng.integers(1, 4))
        bounds.append((start, min(start + step, size)))
        start += step
    return bounds


def chunked(method, sparse, vol, factor, num_mips, bounds):
    """Downsample every chunk of the grid `bounds` (one interval list per axis) on
    its own and paste the chunk mips into whole-size arrays. Checks that the chunk
    mips tile each mip exactly (every voxel written once)."""
    shapes = [tb.mip_shape(vol.shape, factor, k) for k in range(1, num_mips + 1)]
    out = [np.zeros(s, dtype=vol.dtype) for s in shapes]
    hits = [np.zeros(s, dtype=np.int32) for s in shapes]
    full = list(factor) + [1] * (vol.ndim - len(factor))
    for chunk in itertools.product(*bounds):
        view = vol[tuple(slice(a, b) for a, b in chunk)]  # a strided view, not a copy
        mips = downsample(method, sparse, view, factor, num_mips)
        for k, mip in enumerate(mips, start=1):
            starts = []
            for (a, _), f in zip(chunk, full):
                assert a % f**k == 0
                starts.append(a // f**k)
            region = tuple(slice(s, s + n) for s, n in zip(starts, mip.shape))
            out[k - 1][region] = mip
            hits[k - 1][region] += 1
    for k, h in enumerate(hits, start=1):
        assert (h == 1).all(), f"chunk mips do not tile mip {k}"
    return out


def check(method, sparse, vol, factor, num_mips, bounds, what):
    whole = downsample(method, sparse, vol, factor, num_mips)
    parts = chunked(method, sparse, vol, factor, num_mips, bounds)
    assert len(whole) == len(parts) == num_mips
    for k, (p, w) in enumerate(zip(parts, whole), start=1):
        assert_exact(p, w, what=f"{what} mip {k}")


@pytest.mark.parametrize("shape,factor,num_mips", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("method,sparse", METHODS, ids=METHOD_IDS)
def test_aligned_chunks_equal_whole_volume(rng, method, sparse, shape, factor, num_mips):
    align = tb.chunk_alignment(factor, num_mips)
    align = align + (1,) * (len(shape) - len(align))
    for i, dtype in enumerate(ALL_DTYPES):
        order, regular = (("F", False), ("C", True))[i % 2]
        vol = np.asarray(volume(rng, method, sparse, shape, dtype), order=order)
        bounds = [chunk_bounds(rng, s, a, regular) for s, a in zip(shape, align)]
        what = f"{method} sparse={sparse} {np.dtype(dtype).name} {order} chunks {bounds}"
        check(method, sparse, vol, factor, num_mips, bounds, what)


@st.composite
def chunking_cases(draw):
    """A random method, dtype, ndim, factor (the 2x2 and 2x2x2 families on random
    axes, or random factors 1..4), mip count, volume shape and chunk grid."""
    method, sparse = draw(st.sampled_from(METHODS))
    dtype = draw(st.sampled_from(ALL_DTYPES))
    ndim = draw(st.integers(1, 4))
    family = draw(st.sampled_from(["2x2", "2x2x2", "any"]))
    twos = {"2x2": 2, "2x2x2": 3}.get(family, 0)
    if twos > ndim:
        family, twos = "any", 0
    if family == "any":
        factor = tuple(draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim)))
    else:
        axes = draw(st.permutations(range(ndim)))[:twos]
        factor = tuple(2 if a in axes else 1 for a in range(ndim))
    cap = int(30000 ** (1 / ndim))  # at most 30000 voxels
    num_mips = draw(st.integers(1, 5))
    while num_mips and max(f**num_mips for f in factor) > cap // 2:
        num_mips -= 1  # room for at least two chunks on every axis
    shape = []
    for f in factor:
        a = f**num_mips
        size = a * draw(st.integers(0, 3)) + draw(st.integers(0, a if a > 1 else 4))
        shape.append(min(max(size, 1), cap))
    shape = tuple(shape)
    seed = draw(st.integers(0, 2**32 - 1))
    order = draw(st.sampled_from("CF"))
    return method, sparse, np.dtype(dtype), shape, factor, num_mips, seed, order


@given(chunking_cases())
def test_aligned_chunks_equal_whole_volume_random(case):
    method, sparse, dtype, shape, factor, num_mips, seed, order = case
    rng = np.random.default_rng(seed)
    vol = np.asarray(volume(rng, method, sparse, shape, dtype), order=order)
    align = tb.chunk_alignment(factor, num_mips)
    bounds = [chunk_bounds(rng, s, a) for s, a in zip(shape, align)]
    what = f"{method} sparse={sparse} {dtype.name} {shape} f={factor} chunks {bounds}"
    check(method, sparse, vol, factor, num_mips, bounds, what)


def test_edge_chunk_is_the_whole_volume_call(rng):
    """The last chunk on an axis is short; it behaves as the whole-volume call does
    at that edge (replicate padding for 2x2 averaging, clipped windows for 3x3)."""
    for factor, num_mips in (((2, 2, 1), 3), ((3, 3, 1), 2), ((2, 2, 2), 2)):
        align = tb.chunk_alignment(factor, num_mips)
        shape = tuple(2 * a + 1 if a > 1 else 3 for a in align)  # one-voxel edge chunk
        vol = random_values(rng, shape, np.uint8)
        edge = tuple(slice(2 * a if a > 1 else 0, None) for a in align)
        for method, sparse in METHODS:
            whole = downsample(method, sparse, vol, factor, num_mips)
            part = downsample(method, sparse, vol[edge], factor, num_mips)
            for k, (p, w) in enumerate(zip(part, whole), start=1):
                region = tuple(
                    slice(e.start // f**k, None) for e, f in zip(edge, factor)
                )
                assert_exact(p, w[region], what=f"{method} sparse={sparse} f={factor} mip {k}")


def test_short_float_edge_chunk_is_exact(rng):
    """An edge chunk of at most half the alignment is 1 voxel wide at some mip
    below num_mips on that axis while the whole volume is not. Float averaging used
    to differ there in the last bit (the whole volume summed the replicated values one
    by one, the chunk left the size-1 axis out); replicated voxels are now weighed
    instead of repeated, so both sums are exact power-of-two multiples of each other."""
    vol = random_values(rng, (3, 64), np.float64)  # x: chunks [0, 2) and [2, 3)
    for sparse in (False, True):
        check("averaging", sparse, vol, (2, 2), 1, [[(0, 2), (2, 3)], [(0, 64)]], "x edge 1")


def test_alignment_must_cover_every_mip(rng):
    """Why factor**num_mips and not factor: chunks of 6 voxels (a multiple of 2 but
    not of 4) give mip 1 right but not mip 2, whose windows straddle two chunks."""
    vol = random_values(rng, (24, 24, 2), np.uint8)
    bounds = [[(0, 6), (6, 12), (12, 18), (18, 24)]] * 2 + [[(0, 2)]]
    whole = tb.downsample_with_averaging(vol, (2, 2, 1), 2)
    out = [np.zeros(w.shape, np.uint8) for w in whole]
    for chunk in itertools.product(*bounds):
        mips = tb.downsample_with_averaging(
            vol[tuple(slice(a, b) for a, b in chunk)], (2, 2, 1), 2
        )
        for k, mip in enumerate(mips, start=1):
            start = (chunk[0][0] // 2**k, chunk[1][0] // 2**k, 0)
            out[k - 1][tuple(slice(s, s + n) for s, n in zip(start, mip.shape))] = mip
    assert tb.chunk_alignment((2, 2, 1), 2) == (4, 4, 1)
    assert_exact(out[0], whole[0], what="mip 1 (chunks aligned to 2)")
    assert not np.array_equal(out[1], whole[1]), "mip 2 needs chunks aligned to 4"


def test_chunk_alignment():
    assert tb.chunk_alignment((2, 2, 1), 4) == (16, 16, 1)
    assert tb.chunk_alignment((2, 3, 1), 3) == (8, 27, 1)
    assert tb.chunk_alignment([2, 2], 0) == (1, 1)
    assert tb.chunk_alignment(4, 2) == (16,)
    assert tb.chunk_alignment((2.0, np.int64(3)), 2) == (4, 9)
    assert tb.chunk_alignment((1,), 2**64 - 1) == (1,)
    assert tb.chunk_alignment((2,) * 8, 1) == (2,) * 8
    for factor, num_mips, status in (
        ((0, 2), 1, tb.TB_ERR_FACTOR),
        ((2,), 64, tb.TB_ERR_SHAPE),  # 2**64 overflows size_t
        ((), 1, tb.TB_ERR_SHAPE),
        ((2,) * 9, 1, tb.TB_ERR_SHAPE),
    ):
        with pytest.raises(tb.TinybrainError) as err:
            tb.chunk_alignment(factor, num_mips)
        assert err.value.status == status
    with pytest.raises(ValueError):
        tb.chunk_alignment((2, -1), 1)
    with pytest.raises(ValueError):
        tb.chunk_alignment((2,), -1)
    with pytest.raises(OverflowError):
        tb.chunk_alignment((2,), 2**64)
