"""The library against tinybrain 1.7.0 (the oracle) and against the reference models.

Where SEMANTICS.md says we match tinybrain, the library must equal the oracle
(bit for bit, or within 1e-6 / 1e-12 relative for float averaging), and so must
the model: that keeps the models honest. Where SEMANTICS.md departs from
tinybrain, the library is compared with the model, and the test's docstring
names the tinybrain bug or difference that the case covers. Case lists follow
section 7 of reference/tinybrain-1.7.0-behavior.md.
"""

import numpy as np
import pytest

import models
import oracle
import subject
from datagen import (
    DTYPE_IDS,
    assert_close,
    assert_exact,
    assert_mips,
    assert_values,
    label_pool,
    labels,
    positive_floats,
    random_values,
    sparsify,
    with_layout,
)

pytestmark = pytest.mark.usefixtures("lib")

ACC = ["uint8", "int8", "uint16", "int16"]  # tinybrain's integer accumulator dtypes
ALL = DTYPE_IDS
INTS = [d for d in ALL if not d.startswith("float")]


def rtol(dtype):
    return 1e-6 if np.dtype(dtype) == np.float32 else 1e-12


def absmax(img):
    finite = np.abs(img[np.isfinite(img)]) if img.dtype.kind == "f" else np.abs(img)
    return float(finite.max()) if finite.size else 0.0


def compare(got, expected, img, what=""):
    """Exact for integers; floats within the dtype's tolerance (scale: the input)."""
    if img.dtype.kind == "f":
        assert_mips(got, expected, assert_close, what=what, rtol=rtol(img.dtype), scale=absmax(img))
    else:
        assert_mips(got, expected, assert_exact, what=what)


def no_wrap_values(rng, shape, dtype):
    """Full-range data, except where tinybrain's own 2-wide sums would wrap:
    its single-mip kernels sum uint64/int64 in 64 bits, and the 2x2x2 odd-x/odd-y
    corner sums uint32 in 32 bits (reference 1.2.a, 1.3.a)."""
    dtype = np.dtype(dtype)
    if dtype == np.uint64:
        return random_values(rng, shape, dtype, high=2**60)
    if dtype == np.int64:
        return random_values(rng, shape, dtype, low=-(2**60), high=2**60)
    if dtype == np.uint32:
        return random_values(rng, shape, dtype, high=2**31 - 1)
    return random_values(rng, shape, dtype)


def family_factor(ndim, nfam):
    return (2,) * nfam + (1,) * (ndim - nfam)


def run_into_views(op, img, factor, n, sparse=False):
    """The library writing into caller outputs that are not Fortran-contiguous:
    reversed views of C-ordered arrays."""
    shapes = [models.mip_shape(img.shape, factor, k) for k in range(1, n + 1)]
    outs = [np.zeros(s, dtype=img.dtype)[::-1] for s in shapes]
    got = subject.run(op, img, factor, n, sparse, out=outs)
    assert all(g is o for g, o in zip(got, outs))
    return got


# ===========================================================================
# Averaging: where we match tinybrain


MULTIMIP_2X2 = [
    ((64, 64, 3), 5),
    ((65, 63, 2), 5),
    ((5, 7, 3), 2),
    ((33, 47), 5),
    ((70, 66, 2, 3), 6),
    ((129, 130, 1), 7),
    ((23, 17, 2), 4),
    ((16, 9), 3),
    ((515, 601), 9),
]


@pytest.mark.parametrize("dtype", ACC)
@pytest.mark.parametrize("shape, n", MULTIMIP_2X2, ids=str)
def test_avg_2x2_multimip_integer_cadence(rng, dtype, shape, n):
    """2x2 multi-mip accumulator (shift 2,4,6,8 and the reset), odd sizes
    included: bit-exact. Our num_mips=1 equals tinybrain's first mip of a
    multi-mip call."""
    img = random_values(rng, shape, dtype)
    expected = oracle.run("averaging", img, (2, 2), n)
    assert_mips(models.run("averaging", img, (2, 2), n), expected, what="model")
    for layout in ("F", "C", "neg"):
        x = with_layout(img, layout)
        factor = family_factor(img.ndim, 2)
        assert_mips(subject.run("averaging", x, factor, n), expected, what=layout)
    assert_mips(subject.run("averaging", img, (2, 2), 1), expected[:1], what="num_mips=1")
    assert_mips(run_into_views("averaging", img, (2, 2), n), expected, what="out=")


def test_avg_2x2_uint8_512_nine_mips(rng):
    """512x512 uint8, 9 mips: the second shift cycle (mip 5 after the reset)."""
    img = random_values(rng, (512, 512), "uint8")
    expected = oracle.run("averaging", img, (2, 2), 9)
    assert_mips(models.run("averaging", img, (2, 2), 9), expected, what="model")
    assert_mips(subject.run("averaging", img, (2, 2), 9), expected)
    assert_mips(subject.run("averaging", img.T.copy().T, (2, 2), 9), expected, what="C")


MULTIMIP_2X2X2 = [
    ((16, 16, 16), 4),
    ((17, 15, 9), 3),
    ((5, 7, 4), 2),
    ((33, 47, 35), 5),
    ((8, 8, 8, 3), 3),
    ((9, 10, 11, 2), 3),
    ((64, 64, 64), 6),
]


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16"])
@pytest.mark.parametrize("shape, n", MULTIMIP_2X2X2, ids=str)
def test_avg_2x2x2_multimip_integer(rng, dtype, shape, n):
    """2x2x2 multi-mip accumulator (u8/i8 cycle 8, u16 cycle 5), odd sizes and
    channels included: bit-exact."""
    img = random_values(rng, shape, dtype)
    expected = oracle.run("averaging", img, (2, 2, 2), n)
    assert_mips(models.run("averaging", img, (2, 2, 2), n), expected, what="model")
    for layout in ("F", "C", "neg"):
        x = with_layout(img, layout)
        assert_mips(subject.run("averaging", x, (2, 2, 2), n), expected, what=layout)


@pytest.mark.parametrize(
    "dtype, shape",
    [("uint8", (256, 257, 259)), ("int8", (256, 256, 256)), ("uint16", (64, 64, 65))],
)
def test_avg_2x2x2_multimip_full_cycle(rng, dtype, shape):
    """Through the 2x2x2 reset: 8 mips for 8-bit (shift 24), 6 for 16-bit (15)."""
    n = 8 if np.dtype(dtype).itemsize == 1 else 6
    img = random_values(rng, shape, dtype)
    expected = oracle.run("averaging", img, (2, 2, 2), n)
    assert_mips(subject.run("averaging", img, (2, 2, 2), n), expected)


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("shape", [(8, 6), (8, 6, 3), (8, 6, 3, 2), (8, 6, 2, 2, 2)], ids=str)
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_avg_2x2_single_mip_even(rng, dtype, shape, sparse):
    """Single-mip 2x2 on even sizes, every dtype, sparse or not. uint64/int64
    data stay below 2**60 in magnitude: tinybrain sums them in 64 bits and wraps
    (we do not; the wrapping range is covered against the model elsewhere)."""
    img = no_wrap_values(rng, shape, dtype)
    if sparse:
        img = sparsify(rng, img, 0.3)
    factor = family_factor(len(shape), 2)
    # tinybrain accelerates (2, 2) on 2-D..5-D, but (2, 2, 1, 1, 1) goes to its numpy fallback
    expected = oracle.run("averaging", img, (2, 2), 1, sparse)
    compare(models.run("averaging", img, factor, 1, sparse), expected, img, "model")
    for layout in ("F", "C", "neg"):
        got = subject.run("averaging", with_layout(img, layout), factor, 1, sparse)
        compare(got, expected, img, layout)


SINGLE_2X2X2 = [(8, 8, 8), (9, 8, 8), (8, 9, 8), (8, 8, 9), (9, 9, 9), (5, 7, 3), (3, 3, 3),
                (2, 2, 2), (7, 6, 5, 3), (4, 5, 3, 2)]  # fmt: skip


@pytest.mark.parametrize(
    "dtype", ["uint8", "int8", "uint16", "int16", "uint32", "uint64", "float32", "float64"]
)
@pytest.mark.parametrize("shape", SINGLE_2X2X2, ids=str)
def test_avg_2x2x2_single_mip(rng, dtype, shape):
    """Single-mip 2x2x2, odd edges included (tinybrain's single-mip 2x2x2 averages
    the real voxels, which equals the replicate-padded mean for one mip).
    uint32 below 2**31 and uint64 below 2**60: tinybrain's odd-x-and-y corner
    sum wraps in the element type. int32/int64 are refused by tinybrain here."""
    img = no_wrap_values(rng, shape, dtype)
    factor = family_factor(len(shape), 3)
    expected = oracle.run("averaging", img, factor, 1)
    compare(models.run("averaging", img, factor, 1), expected, img, "model")
    for layout in ("F", "C"):
        compare(subject.run("averaging", with_layout(img, layout), factor, 1), expected, img)


FLOAT_MULTIMIP = [
    ((2, 2), (64, 64, 3), 5),
    ((2, 2), (65, 63, 2), 5),
    ((2, 2), (33, 47), 5),
    ((2, 2), (129, 130), 7),
    ((2, 2, 2), (17, 15, 9), 3),
    ((2, 2, 2), (33, 47, 35), 5),
    ((2, 2, 2), (8, 8, 8, 3), 3),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("factor, shape, n", FLOAT_MULTIMIP, ids=str)
def test_avg_float_multimip(rng, dtype, factor, shape, n):
    """Float multi-mip 2x2 / 2x2x2: within 1e-6 (float32) / 1e-12 (float64)
    relative. tinybrain sums float32 in float32 in a SIMD order, we sum in
    float64; positive data so that every voxel's relative error is meaningful,
    then signed data with the input's magnitude as the error scale."""
    img = positive_floats(rng, shape, dtype)
    expected = oracle.run("averaging", img, factor, n)
    assert_mips(models.run("averaging", img, factor, n), expected, assert_close, rtol=rtol(dtype))
    got = subject.run("averaging", img, factor, n)
    assert_mips(got, expected, assert_close, rtol=rtol(dtype))
    img = random_values(rng, shape, dtype)
    expected = oracle.run("averaging", img, factor, n)
    compare(subject.run("averaging", with_layout(img, "neg"), factor, n), expected, img)


SPARSE_2X2 = [((64, 64, 3), 4), ((32, 16), 4), ((16, 16, 2, 2), 3), ((48, 32, 2), 4)]


@pytest.mark.parametrize("dtype", ACC + ["float32", "float64"])
@pytest.mark.parametrize("shape, n", SPARSE_2X2, ids=str)
@pytest.mark.parametrize("zeros", [0.3, 0.95])
def test_avg_sparse_2x2_even_mips_1_to_4(rng, dtype, shape, n, zeros):
    """Sparse 2x2, mips 1-4 on shapes that stay even: equal to tinybrain."""
    img = sparsify(rng, random_values(rng, shape, dtype), zeros)
    expected = oracle.run("averaging", img, (2, 2), n, True)
    compare(models.run("averaging", img, (2, 2), n, True), expected, img, "model")
    for layout in ("F", "C", "neg"):
        got = subject.run("averaging", with_layout(img, layout), (2, 2), n, True)
        compare(got, expected, img, layout)


@pytest.mark.parametrize("dtype, n", [("uint8", 5), ("uint16", 5)])
@pytest.mark.parametrize("zeros", [0.3, 0.95])
def test_avg_sparse_2x2x2_even(rng, dtype, n, zeros):
    """Sparse 2x2x2 on even power-of-two shapes, before tinybrain's reset
    (after mip 8 for uint8, mip 5 for uint16): equal to tinybrain."""
    for shape, mips in (((8, 8, 8), 3), ((16, 16, 16), 4), ((32, 32, 32), n), ((8, 8, 4, 2), 2)):
        img = sparsify(rng, random_values(rng, shape, dtype), zeros)
        expected = oracle.run("averaging", img, (2, 2, 2), mips, True)
        assert_mips(models.run("averaging", img, (2, 2, 2), mips, True), expected, what="model")
        assert_mips(subject.run("averaging", img, (2, 2, 2), mips, True), expected)


GENERIC_FACTORS = [(2, 1, 1), (3, 3, 1), (4, 4, 1), (2, 2, 3), (1, 2), (2, 3, 1, 1)]


@pytest.mark.parametrize("dtype", ACC)
@pytest.mark.parametrize("factor", GENERIC_FACTORS, ids=str)
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_avg_generic_first_mip_small_integers(rng, dtype, factor, sparse):
    """Other factors, first mip, 8/16-bit integers: tinybrain's numpy fallback
    sums in float32, exact for these windows, and divides by the number of
    real (sparse: nonzero) voxels as we do, so mip 1 is equal. (Later mips
    differ: tinybrain carries float32.)"""
    shape = (9, 7, 5, 2)[: max(len(factor), 3)]
    img = random_values(rng, shape, dtype)
    if sparse:
        img = sparsify(rng, img, 0.5)
    expected = oracle.run("averaging", img, factor, 1, sparse)
    assert_mips(models.run("averaging", img, factor, 1, sparse), expected, assert_values)
    got = subject.run("averaging", with_layout(img, "C"), factor, 1, sparse)
    assert_mips(got, expected, assert_values)


# ===========================================================================
# Averaging: where we depart from tinybrain (compared with the models)


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize(
    "shape", [(5, 4), (5, 7, 3), (9, 9, 2), (3, 3, 1, 2), (4, 5), (1, 3)], ids=str
)
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_avg_2x2_single_mip_odd_sizes(rng, dtype, shape, sparse):
    """Departure: tinybrain's single-mip 2x2 kernel misplaces the odd-x column
    (osx-2 overwritten, osx-1 left 0) and reads other slices or out-of-bounds
    memory for odd y (reference 1.2.a). We give the multi-mip edge result:
    replicate padding. For the accumulator dtypes that is exactly tinybrain's
    first mip of num_mips=2, checked too."""
    img = random_values(rng, shape, dtype)
    if sparse:
        img = sparsify(rng, img, 0.4)
    expected = models.run("averaging", img, (2, 2), 1, sparse)
    compare(subject.run("averaging", img, (2, 2), 1, sparse), expected, img)
    if dtype in ACC and not sparse and min(shape[:2]) >= 4:
        assert_mips(
            subject.run("averaging", img, (2, 2), 1), oracle.run("averaging", img, (2, 2), 2)[:1]
        )


@pytest.mark.parametrize("dtype", ["uint32", "int32", "uint64", "int64"])
@pytest.mark.parametrize("factor", [(2, 2), (2, 1, 2), (2, 2, 2)], ids=str)
def test_avg_wide_integers_multimip(rng, dtype, factor):
    """Departure: for 32/64-bit integers tinybrain's multi-mip (and 2x2x2
    single-mip int32/int64) goes to its numpy fallback, which averages in
    float32 and casts out-of-range values to INT_MIN / 0 (reference 1.4, 5.7).
    We accumulate exactly (in i128, or in two 64-bit parts for int64/uint64 pyramids
    of up to 2^31 voxels per block): full-range data and the extremes."""
    info = np.iinfo(dtype)
    shape = (13, 10, 6)
    for img in (
        random_values(rng, shape, dtype),
        np.full(shape, info.max, dtype=dtype),
        np.full(shape, info.min, dtype=dtype),
        rng.choice(np.array([info.min, info.max, 0, 1], dtype=dtype), size=shape),
    ):
        expected = models.run("averaging", img, factor, 3)
        for layout in ("F", "C", "neg"):
            assert_mips(subject.run("averaging", with_layout(img, layout), factor, 3), expected)


def test_avg_2x2x2_int16_multimip(rng):
    """Departure: tinybrain's 2x2x2 int16 multi-mip always raises (it allocates
    a uint16 buffer); we run the 16-bit cadence (cycle 5)."""
    img = random_values(rng, (33, 34, 35), "int16")
    with pytest.raises(ValueError):
        oracle.run("averaging", img, (2, 2, 2), 2)
    assert_mips(
        subject.run("averaging", img, (2, 2, 2), 6), models.run("averaging", img, (2, 2, 2), 6)
    )


@pytest.mark.parametrize("dtype", ACC + ["float32", "float64"])
@pytest.mark.parametrize(
    "shape, n",
    [
        ((5, 4, 1), 2),
        ((4, 5, 2), 2),
        ((65, 63, 3), 5),
        ((32, 32), 6),
        ((23, 17, 2), 4),
        ((515, 601), 9),
    ],
    ids=str,
)
def test_avg_sparse_2x2_odd_edges_and_late_mips(rng, dtype, shape, n):
    """Departure: tinybrain's sparse 2x2 counts the odd-x edge once but sums it
    twice (2x too bright, wrapping), doubles the odd-y row only in the last z
    slice, keeps mips 5+ 256x too dark and wraps its counts after 8 mips
    (reference 1.2.d). We divide exact sums by exact counts."""
    img = sparsify(rng, random_values(rng, shape, dtype), 0.5)
    expected = models.run("averaging", img, (2, 2), n, True)
    compare(subject.run("averaging", img, (2, 2), n, True), expected, img)
    full = np.full(shape, 100, dtype=dtype)  # every mean is 100
    for out in subject.run("averaging", full, (2, 2), n, True):
        assert (out == 100).all()


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize(
    "shape, n", [((3, 2, 2), 1), ((9, 8, 8), 2), ((17, 19, 21), 3), ((7, 6, 5, 3), 2)], ids=str
)
def test_avg_sparse_2x2x2(rng, dtype, shape, n):
    """Departure: tinybrain's sparse 2x2x2 counts the odd-x edge once (2x too
    bright, wrapping: 3x2x2 of 100 gives [100, 200]), shifts the counts at the
    reset, and refuses every dtype but uint8/uint16 (reference 1.3.d)."""
    img = sparsify(rng, random_values(rng, shape, dtype), 0.5)
    expected = models.run("averaging", img, (2, 2, 2), n, True)
    compare(subject.run("averaging", img, (2, 2, 2), n, True), expected, img)


def _assert_trunc_of(got, carried, tol, what):
    """Integer output of the generic path: trunc(carried float64 mean), where the
    mean itself may differ by `tol` (the float64 summation order is not specified,
    and 64-bit values are rounded when carried): any value between
    trunc(mean - tol) and trunc(mean + tol) is accepted."""
    lo, hi = np.trunc(carried - tol), np.trunc(carried + tol)
    g = got.astype(np.float64)
    slack = np.spacing(np.maximum(np.abs(lo), np.abs(hi)))  # got -> float64 rounding
    ok = (g >= lo - slack) & (g <= hi + slack)
    assert ok.all(), (
        f"{what}: {int((~ok).sum())} voxels are not trunc(mean); first: got "
        f"{got[~ok][:3]}, mean {carried[~ok][:3]}"
    )


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize(
    "factor",
    [(2, 1, 1), (3, 3, 1), (4, 4, 1), (2, 2, 3), (1, 2), (2, 3, 1, 1), (3,), (2, 2, 2, 2)],
    ids=str,
)
def test_avg_generic_factors(rng, dtype, factor):
    """Departure: tinybrain's numpy fallback averages in float32 (and for
    32/64-bit types truncates between mips, wrapping out-of-range casts); we
    take the clipped mean of means in float64 and truncate (integers) or
    round (floats) only when writing (reference 1.4)."""
    shape = (9, 7, 5, 3)
    img = random_values(rng, shape, dtype)
    if np.dtype(dtype) == np.uint64:
        img >>= np.uint64(1)  # keep float64(value) below 2**64: the cast back is defined
    n = 3
    got = subject.run("averaging", img, factor, n)
    expected = models.run("averaging", img, factor, n)
    if img.dtype.kind == "f":
        compare(got, expected, img)
        return
    carried = models.averaging_generic_float64(img, factor, n)
    # float64 rounding of the carried means: a few ulps of the largest input per add
    window = int(np.prod(factor))
    tol = 4 * window * np.finfo(np.float64).eps * absmax(img)
    assert [g.shape for g in got] == [e.shape for e in expected]
    for k, (g, c) in enumerate(zip(got, carried), start=1):
        assert g.dtype == img.dtype
        _assert_trunc_of(g, c, tol, f"mip {k}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sx", [6, 16, 33])
def test_avg_float_specials(dtype, sx):
    """NaN propagates, inf + -inf is NaN, -0.0 sums to 0, and 3e38 stays finite
    in float32 (tinybrain's float32 multi-mip sums in float32 and overflows to
    inf, reference 1.5): the model in float64 is the reference."""
    rng = np.random.default_rng(sx)
    img = rng.choice(
        np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1.5, 3e38, -3e38], dtype=dtype),
        size=(sx, 10, 2),
    )
    for factor, n in (((2, 2), 3), ((2, 2, 2), 1), ((3, 1, 1), 2)):
        expected = models.run("averaging", img, factor, n)
        got = subject.run("averaging", img, factor, n)
        assert_mips(got, expected, assert_close, rtol=rtol(dtype))
    big = np.full((8, 8), 3e38, dtype=dtype)
    for out in subject.run("averaging", big, (2, 2), 3):
        assert (out == np.asarray(3e38, dtype=dtype)).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sx", [6, 16, 33])
def test_avg_float_specials_match_tinybrain(dtype, sx):
    """NaN, +/-inf and -0.0 without overflow: the same values as tinybrain in
    its SIMD (sx >= 16) and scalar regions (-0.0 and +0.0 compare equal: its
    leading 0 + -0.0 gives +0.0)."""
    rng = np.random.default_rng(100 + sx)
    img = rng.choice(
        np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1.5, -2.25], dtype=dtype), size=(sx, 10, 4)
    )
    for factor, n in (((2, 2), 2), ((2, 2, 2), 1), ((2, 2, 2), 2)):
        expected = oracle.run("averaging", img, factor, n)
        assert_mips(
            subject.run("averaging", img, factor, n), expected, assert_close, rtol=rtol(dtype)
        )


@pytest.mark.parametrize("op", ["averaging", "segmentation", "min_pooling", "max_pooling"])
@pytest.mark.parametrize("dtype", ["uint8", "int64", "float32"])
def test_all_ones_factor(rng, op, dtype):
    """An all-ones factor gives the input at every mip, as tinybrain does for
    these operations (striding departs, see test_striding_all_ones_copies)."""
    img = random_values(rng, (5, 4, 3), dtype)
    expected = oracle.run(op, img, (1, 1, 1), 3)
    assert_mips(subject.run(op, with_layout(img, "neg"), (1, 1, 1), 3), expected, assert_values)


# ===========================================================================
# Mode pooling: where we match


# (133, 9): rows of 67 blocks, which fill whole AVX2 vectors of u8 labels (32 blocks)
# and leave a tail; (33, 31, 2) does so for 32- and 64-bit labels.
MODE_2X2_SHAPES = [(8, 8), (9, 7), (5, 7, 3), (6, 6, 2, 3), (33, 31, 2), (133, 9), (2, 2), (3, 3), (1, 1)]


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("shape", MODE_2X2_SHAPES, ids=str)
def test_mode_2x2(rng, dtype, shape):
    """Mode 2x2 (tinybrain's C++ rule, striding odd edges = replicate padding),
    every dtype compared bitwise, any layout, mode of modes over 1-5 mips."""
    factor = family_factor(len(shape), 2)
    for k in (2, 3, 5):
        img = labels(rng, shape, dtype, k)
        n = 1 + (k % 5) if min(shape[:2]) > 1 else 2
        expected = oracle.run("segmentation", img, factor, n)
        assert_mips(models.run("segmentation", img, factor, n), expected, what="model")
        for layout in ("F", "C", "step", "perm"):
            x = with_layout(img, layout, rng)
            assert_mips(oracle.run("segmentation", x, factor, n), expected, what="oracle " + layout)
            assert_mips(subject.run("segmentation", x, factor, n), expected, what=layout)
        # tinybrain refuses negative strides; we take them
        assert_mips(
            subject.run("segmentation", with_layout(img, "neg"), factor, n), expected, what="neg"
        )
        assert_mips(run_into_views("segmentation", img, factor, n), expected, what="out=")


@pytest.mark.parametrize("dtype", ALL)
def test_mode_2x2_tie_blocks(dtype):
    """Explicit tie patterns of the 2x2 rule, with each dtype's extreme labels
    and, for floats, NaN pairs and +0/-0 (different bits)."""
    pool = label_pool(dtype)
    v1, v2, v3, v4 = pool[1], pool[2], pool[3], pool[4]
    blocks = []
    for pattern in (
        (1, 2, 3, 4),
        (1, 1, 2, 2),
        (1, 2, 1, 2),
        (1, 2, 2, 1),
        (2, 1, 1, 2),
        (1, 2, 3, 3),
    ):
        vals = {1: v1, 2: v2, 3: v3, 4: v4}
        blocks.append([vals[p] for p in pattern])
    if np.dtype(dtype).kind == "f":
        nan, pz, nz = np.nan, 0.0, -0.0
        blocks += [[nan, nan, 1, 2], [pz, nz, nz, 1], [nz, pz, pz, nz], [1, nan, 2, nan]]
    img = np.zeros((2 * len(blocks), 2), dtype=dtype)
    for i, (a, b, c, d) in enumerate(blocks):
        img[2 * i, 0], img[2 * i + 1, 0], img[2 * i, 1], img[2 * i + 1, 1] = a, b, c, d
    expected = oracle.run("segmentation", img, (2, 2), 1)
    assert_mips(models.run("segmentation", img, (2, 2), 1), expected, what="model")
    assert_mips(subject.run("segmentation", img, (2, 2), 1), expected)


# (37, 6, 4): rows of 18 and then 9 blocks, so 16-, 32- and 64-bit labels fill whole
# AVX2 vectors (16, 8 and 4 blocks) and leave a tail to the scalar rule; (133, 6, 4),
# rows of 67 and 34 blocks, does so for 8-bit labels (32 blocks) too.
MODE_2X2X2_SHAPES = [
    (4, 4, 4), (5, 7, 3), (6, 6, 6), (2, 2, 2), (3, 3, 3), (9, 8, 7), (6, 5, 4, 1), (37, 6, 4), (133, 6, 4),
]


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("shape", MODE_2X2X2_SHAPES, ids=str)
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_mode_2x2x2_fortran_single_channel(rng, dtype, shape, sparse):
    """Mode 2x2x2 on Fortran-ordered single-channel input: most frequent of the
    8 (replicate-padded) values, ties to the earliest first occurrence; sparse
    ignores zeros. Mode of modes over 1-3 mips. We must also give the same
    result for any other layout of the same array (tinybrain does not)."""
    factor = family_factor(len(shape), 3)
    for k in (2, 3, 4, 9):
        img = np.asfortranarray(labels(rng, shape, dtype, k))
        n = 1 + k % 3
        expected = oracle.run("segmentation", img, factor, n, sparse)
        assert_mips(models.run("segmentation", img, factor, n, sparse), expected, what="model")
        for layout in ("F", "C", "neg", "perm"):
            x = with_layout(img, layout, rng)
            assert_mips(subject.run("segmentation", x, factor, n, sparse), expected, what=layout)
        assert_mips(run_into_views("segmentation", img, factor, n, sparse), expected, what="out=")


@pytest.mark.parametrize("dtype", INTS)
@pytest.mark.parametrize("shape", [(8, 8, 2), (9, 7, 3), (6, 6, 1), (10, 10, 2)], ids=str)
def test_mode_sparse_2x2_first_mip(rng, dtype, shape):
    """Sparse 2x2 mode, first mip: tinybrain's stippled COUNTLESS (integers,
    factor (2,2,1)) follows the same rule, except its last fallback ("first
    nonzero of a, b, c") visits (x, y+1) before (x+1, y): when a == d == 0 and
    b, c are distinct nonzeros it returns c, we return b. Those voxels are
    compared with the model, all others with tinybrain."""
    for k in (2, 3, 5):
        img = labels(rng, shape, dtype, k)
        expected_tb = oracle.run("segmentation", img, (2, 2, 1), 1, True)[0]
        model = models.run("segmentation", img, (2, 2, 1), 1, True)[0]
        got = subject.run("segmentation", img, (2, 2, 1), 1, True)[0]
        assert_exact(got, model)
        win = models.windows(img, (2, 2, 1))[0]
        a, b, c, d = (win[..., i] for i in range(4))
        departs = (a == 0) & (d == 0) & (b != 0) & (c != 0) & (b != c)
        assert_exact(np.where(departs, 0, got), np.where(departs, 0, expected_tb))


@pytest.mark.parametrize("dtype", INTS)
def test_mode_2x2_on_y_and_z(rng, dtype):
    """Factor (1, 2, 2): tinybrain's numpy COUNTLESS applies the same 2x2 rule
    (symmetric in b and c) when no label is -1 or the uint64 maximum (those wrap
    to 0 in its +1 shift and are ignored)."""
    info = np.iinfo(dtype)
    pool = np.array([v for v in label_pool(dtype) if v not in (-1, info.max)], dtype=dtype)
    for shape in ((3, 8, 8), (2, 9, 7), (4, 5, 6)):
        img = rng.choice(pool[: 2 + shape[0]], size=shape)
        expected = oracle.run("segmentation", img, (1, 2, 2), 2)
        assert_mips(models.run("segmentation", img, (1, 2, 2), 2), expected, what="model")
        assert_mips(subject.run("segmentation", img, (1, 2, 2), 2), expected)


# ===========================================================================
# Mode pooling: where we depart


@pytest.mark.parametrize("dtype", ["uint8", "int32", "float32", "uint64"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_mode_2x2x2_c_order_and_channels(rng, dtype, sparse):
    """Departure: tinybrain's 2x2x2 mode reads C-order input as if it were
    Fortran (the transposed result) and corrupts memory with more than one
    channel (reference 2.3). Every layout and every channel must give the
    Fortran single-channel answer."""
    img = labels(rng, (7, 6, 5), dtype, 3)
    expected = oracle.run("segmentation", np.asfortranarray(img), (2, 2, 2), 2, sparse)
    assert_mips(
        subject.run("segmentation", np.ascontiguousarray(img), (2, 2, 2), 2, sparse), expected
    )
    channels = labels(rng, (7, 6, 5, 3), dtype, 4)
    expected = models.run("segmentation", channels, (2, 2, 2, 1), 2, sparse)
    for layout in ("F", "C", "neg"):
        got = subject.run("segmentation", with_layout(channels, layout), (2, 2, 2, 1), 2, sparse)
        assert_mips(got, expected, what=layout)
    for c in range(3):
        single = np.asfortranarray(channels[..., c])
        tb = oracle.run("segmentation", single, (2, 2, 2), 2, sparse)
        assert_mips([m[..., c] for m in expected], tb, what=f"channel {c}")


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint32", "int64", "float64"])
@pytest.mark.parametrize(
    "shape, factor",
    [
        ((9, 9, 3), (3, 3, 1)),
        ((8, 8, 2), (4, 4, 1)),
        ((9, 7, 2), (4, 4, 1)),
        ((8, 8, 8), (4, 4, 4)),
        # Rows a multiple of 4 KiB apart, 16 per window: copied a chunk at a time.
        ((4096, 4, 4), (4, 4, 4)),
        ((512, 6, 8), (4, 4, 4)),
        ((9, 7, 3), (2, 1, 1)),
        ((6, 6, 4, 2), (2, 2, 2, 2)),
        ((16, 16, 2), (8, 8, 1)),
        ((7, 10), (1, 3)),
        ((8, 8, 6), (4, 4)),
        ((5, 6, 7), (2, 3, 2)),
        # 80 values a window: past the all-pairs count, sorted when many labels.
        ((8, 8, 10), (4, 4, 5)),
        # Rows of more whole windows than a vector has lanes, and a clipped one: runs
        # of windows counted side by side, the rest one by one.
        ((40, 9, 7), (3, 3, 3)),
        ((50, 9, 2), (3, 3, 1)),
        ((33, 4, 4), (2, 2, 4)),
    ],
    ids=str,
)
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_mode_other_factors(rng, dtype, shape, factor, sparse):
    """Departure: for factors outside 2x2 / 2x2x2 tinybrain strides (floats,
    non-powers of two, odd sizes), runs COUNTLESS levels with other tie rules,
    shrinks z for (4,4) on 3-D, or raises ((2,1,1), (2,2,2,2)) (reference 2.4).
    We take the exact mode over the clipped window, ties to the earliest. The whole
    pool of 10 labels reaches the counts for windows of many labels."""
    for k in (2, 4, 10):
        img = labels(rng, shape, dtype, k)
        expected = models.run("segmentation", img, factor, 2, sparse)
        for layout in ("F", "C"):
            got = subject.run("segmentation", with_layout(img, layout), factor, 2, sparse)
            assert_mips(got, expected, what=layout)


def test_mode_sparse_2x2_keeps_z(rng):
    """Departure: tinybrain's factor (2,2) with sparse=True on an even 3-D
    volume runs COUNTLESS 3D and halves z too (reference 2.4); for us (2,2) means
    (2,2,1)."""
    img = labels(rng, (8, 8, 4), "uint16", 3)
    tb = oracle.run("segmentation", img, (2, 2), 1, True)[0]
    assert tb.shape == (4, 4, 2)
    got = subject.run("segmentation", img, (2, 2), 1, True)
    assert_mips(got, models.run("segmentation", img, (2, 2, 1), 1, True))
    assert got[0].shape == (4, 4, 4)


# ===========================================================================
# Striding, min / max


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 3), (4, 4, 4, 2), (9, 1, 3)], ids=str)
@pytest.mark.parametrize("factor", [(2, 2), (2, 2, 1), (3,), (2, 3, 2, 1), (1, 3, 3)], ids=str)
def test_striding(rng, shape, factor):
    """Striding equals tinybrain's views, 1-3 mips, any layout."""
    factor = factor[: len(shape)]
    img = random_values(rng, shape, "int16")
    for n in (1, 2, 3):
        expected = oracle.run("striding", img, factor, n)
        assert_mips(models.run("striding", img, factor, n), expected, what="model")
        for layout in ("F", "C", "neg", "step"):
            got = subject.run("striding", with_layout(img, layout), factor, n)
            assert_mips(got, expected, what=layout)


def test_striding_all_ones_copies(rng):
    """Departure: tinybrain returns [] for an all-ones factor; SEMANTICS says
    every output is a copy of the input."""
    img = random_values(rng, (4, 3), "uint8")
    assert oracle.run("striding", img, (1, 1), 2) == []
    assert_mips(subject.run("striding", img, (1, 1), 2), [img, img])


DIVISIBLE = [
    ((8, 8), (2, 2)),
    ((8, 8, 2), (2, 1)),
    ((8, 8, 2), (1, 2)),
    ((4, 4, 4), (2, 2, 2)),
    ((16, 8, 4), (4, 2, 1)),
    ((27, 9, 2), (3, 3, 2)),
]


@pytest.mark.parametrize("op", ["max_pooling", "min_pooling"])
@pytest.mark.parametrize("dtype", ["int8", "float32", "uint64", "float64", "int32"])
@pytest.mark.parametrize("shape, factor", DIVISIBLE, ids=str)
def test_max_min_divisible(rng, op, dtype, shape, factor):
    """Max / min pooling on shapes divisible at every mip: equal to tinybrain,
    NaN included (np.maximum / np.minimum propagate it)."""
    img = random_values(rng, shape, dtype)
    if img.dtype.kind == "f":
        img.flat[::7] = np.nan
    f = factor + (1,) * (len(shape) - len(factor))
    n = 1
    while n < 4 and all(s % (g ** (n + 1)) == 0 for s, g in zip(shape, f)):
        n += 1
    expected = oracle.run(op, img, factor, n)
    assert_mips(models.run(op, img, factor, n), expected, assert_values, what="model")
    for layout in ("F", "C", "neg"):
        assert_mips(
            subject.run(op, with_layout(img, layout), factor, n),
            expected,
            assert_values,
            what=layout,
        )
    assert_mips(run_into_views(op, img, factor, n), expected, assert_values, what="out=")


@pytest.mark.parametrize("op", ["max_pooling", "min_pooling"])
@pytest.mark.parametrize("dtype", ["uint8", "int64", "float32"])
@pytest.mark.parametrize(
    "shape, factor, n",
    [((3, 4), (2, 2), 1), ((5, 4), (2, 2), 2), ((8, 8), (2, 2), 4), ((7, 5, 3), (3, 2, 2), 3)],
    ids=str,
)
def test_max_min_clipped(rng, op, dtype, shape, factor, n):
    """Departure: on sizes not divisible by the factor tinybrain raises or
    broadcasts the short section into wrong values (reference 3); we reduce over
    the clipped window."""
    img = random_values(rng, shape, dtype)
    if img.dtype.kind == "f":
        img.flat[::5] = np.nan
    expected = models.run(op, img, factor, n)
    assert_mips(subject.run(op, with_layout(img, "C"), factor, n), expected, assert_values)
