"""Test data, memory layouts and comparisons shared by the Python tests."""

import numpy as np

from models import ALL_DTYPES, FLOAT_DTYPES, INT_DTYPES

DTYPE_IDS = [d.name for d in ALL_DTYPES]


# ----------------------------------------------------------------------------
# data


def random_values(rng, shape, dtype, low=None, high=None):
    """Random data over the dtype's full range (integers) or a wide range of
    magnitudes and both signs (floats). low/high (inclusive) narrow integers."""
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        low = info.min if low is None else low
        high = info.max if high is None else high
        return rng.integers(low, high, size=shape, dtype=dtype, endpoint=True)
    mag = 10.0 ** rng.uniform(-3, 6, size=shape)
    sign = rng.choice([-1.0, 1.0], size=shape)
    return (sign * mag).astype(dtype)


def positive_floats(rng, shape, dtype):
    """Positive floats of varied magnitude: sums without cancellation, so a
    relative tolerance on every voxel is meaningful."""
    return (10.0 ** rng.uniform(-2, 4, size=shape)).astype(dtype)


def label_pool(dtype):
    """Distinct labels that stress each dtype: 0, extremes, -1, float specials."""
    dtype = np.dtype(dtype)
    if dtype.kind == "u":
        m = np.iinfo(dtype).max
        pool = [0, 1, m, m - 1, 2, 7, m // 2, 3, 4, 5]
    elif dtype.kind == "i":
        info = np.iinfo(dtype)
        pool = [0, -1, info.max, info.min, 1, 2, -2, 3, 4, 5]
    else:
        pool = [0.0, 1.5, np.nan, -2.0, np.inf, -0.0, 3.25, -np.inf, 4.0, 5.0]
    return np.array(pool, dtype=dtype)


def labels(rng, shape, dtype, k):
    """Low-cardinality labels (k distinct values) to provoke mode ties. Float
    pools hold NaN and -0.0, a label distinct from 0 (labels compare bitwise)."""
    return rng.choice(label_pool(dtype)[:k], size=shape)


def sparsify(rng, arr, zero_fraction):
    """Set about zero_fraction of the voxels to zero (a sparse mask)."""
    out = arr.copy()
    out[rng.random(arr.shape) < zero_fraction] = 0
    return out


# ----------------------------------------------------------------------------
# memory layouts holding the same logical array

LAYOUTS = ("C", "F", "neg", "step", "perm")


def with_layout(arr, layout, rng=None):
    """Return an array equal to `arr` element for element, laid out in memory as
    named: C, F, neg (every axis reversed: negative strides), step (every other
    element of a larger buffer: positive, non-unit strides), perm (axes stored
    in a random order)."""
    arr = np.asarray(arr)
    if layout == "C":
        return np.ascontiguousarray(arr)
    if layout == "F":
        return np.asfortranarray(arr)
    if layout == "neg":
        out = np.flip(np.flip(arr).copy())
        assert all(s < 0 for s, n in zip(out.strides, out.shape) if n > 1)
        return out
    if layout == "step":
        big = np.zeros(tuple(2 * s + 1 for s in arr.shape), dtype=arr.dtype)
        view = big[tuple(slice(1, None, 2) for _ in arr.shape)]
        view[...] = arr
        return view
    if layout == "perm":
        rng = rng or np.random.default_rng(0)
        perm = rng.permutation(arr.ndim)
        stored = np.ascontiguousarray(arr.transpose(perm))
        return stored.transpose(np.argsort(perm))
    raise ValueError(layout)


# ----------------------------------------------------------------------------
# comparisons


def _where(mask, limit=5):
    idx = np.argwhere(mask)
    return [tuple(int(i) for i in row) for row in idx[:limit]]


def _check_meta(actual, expected, what):
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"


def bits(a):
    a = np.ascontiguousarray(a)
    if a.dtype.kind == "f":
        return a.view(np.dtype("u%d" % a.dtype.itemsize))
    return a


def assert_exact(actual, expected, what=""):
    """Same shape, dtype and bits (floats compared bit for bit)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    _check_meta(actual, expected, what)
    diff = bits(actual) != bits(expected)
    if diff.any():
        where = _where(diff)
        raise AssertionError(
            f"{what}: {int(diff.sum())} of {diff.size} voxels differ, first at {where}: "
            f"got {[actual[w] for w in where]}, expected {[expected[w] for w in where]}"
        )


def assert_values(actual, expected, what=""):
    """Same shape and dtype, equal values (NaN equals NaN, any payload; -0 == +0)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    _check_meta(actual, expected, what)
    if actual.dtype.kind == "f":
        diff = ~((actual == expected) | (np.isnan(actual) & np.isnan(expected)))
    else:
        diff = actual != expected
    if diff.any():
        where = _where(diff)
        raise AssertionError(
            f"{what}: {int(diff.sum())} of {diff.size} voxels differ, first at {where}: "
            f"got {[actual[w] for w in where]}, expected {[expected[w] for w in where]}"
        )


def assert_close(actual, expected, rtol, scale=0.0, what=""):
    """Floats: NaN where expected has NaN, same infinities, and elsewhere
    |actual - expected| <= rtol * max(|expected|, scale). `scale` (e.g. the
    largest |input| under the window) bounds the error of sums that cancel."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    _check_meta(actual, expected, what)
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    nan_diff = np.isnan(a) != np.isnan(e)
    inf_diff = np.isinf(e) & (a != e)
    finite = np.isfinite(e)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.where(finite, np.abs(a - e), 0.0)
        tol = rtol * np.maximum(np.abs(e), scale)
        bad = nan_diff | inf_diff | (finite & ~(err <= tol))
    if bad.any():
        where = _where(bad)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} voxels outside rtol={rtol} "
            f"(scale {scale}), first at {where}: got {[actual[w] for w in where]}, "
            f"expected {[expected[w] for w in where]}"
        )


def assert_mips(actual, expected, compare=assert_exact, what="", **kw):
    """Compare two lists of mips with `compare`."""
    assert len(actual) == len(expected), f"{what}: {len(actual)} mips, expected {len(expected)}"
    for k, (a, e) in enumerate(zip(actual, expected), start=1):
        compare(a, e, what=f"{what} mip {k}", **kw)


__all__ = [
    "ALL_DTYPES",
    "DTYPE_IDS",
    "FLOAT_DTYPES",
    "INT_DTYPES",
    "LAYOUTS",
    "assert_close",
    "assert_exact",
    "assert_mips",
    "assert_values",
    "bits",
    "label_pool",
    "labels",
    "positive_floats",
    "random_values",
    "sparsify",
    "with_layout",
]
