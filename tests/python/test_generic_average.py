"""One mip of averaging with a factor outside the 2x2 / 2x2x2 families, on integers:
each clipped window's sum divided by its count of real voxels, truncated toward zero
(SEMANTICS.md, "Average pooling": the float64 mean, truncated, is that quotient for one
mip). The library divides in f32, in i32 lanes, for windows of fewer than 128 values of
8- and 16-bit integers, and in f64 otherwise (src/kernels/average.rs,
`one_truncated_mean`); these cases lie on both sides of that line, with sums at the
extremes of each dtype, and are checked against exact integer arithmetic.
"""

import numpy as np
import pytest

import tinybrain_ctypes as tb

pytestmark = pytest.mark.usefixtures("lib")

DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32"]
# (factor, window volume): 2 to 125 values (i32 lanes for 8/16-bit), 128 and 256 (i64).
FACTORS = [(1, 1, 2), (2, 1, 1), (3, 3, 1), (3, 1, 7), (5, 5, 5), (8, 8, 2), (16, 16, 1)]
SHAPE = (37, 35, 11)  # no axis a multiple of any factor above 1: every edge is clipped


def clipped_quotients(img, factor):
    """sum / count over each clipped window, in int64, truncated toward zero."""
    pad = [(0, -size % f) for size, f in zip(img.shape, factor)]
    sums = np.pad(img.astype(np.int64), pad)
    counts = np.pad(np.ones(img.shape, np.int64), pad)

    def per_window(a):
        blocks = [n for size, f in zip(a.shape, factor) for n in (size // f, f)]
        return a.reshape(blocks).sum(axis=tuple(range(1, 2 * len(factor), 2)))

    s, c = per_window(sums), per_window(counts)
    return (np.sign(s) * (np.abs(s) // c)).astype(img.dtype)


def extreme_values(dtype, shape, seed):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    random = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    pick = rng.integers(0, 3, size=shape)
    return np.where(pick == 0, info.min, np.where(pick == 1, info.max, random)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("factor", FACTORS)
def test_one_generic_mip_is_the_truncated_integer_quotient(dtype, factor, threads):
    for seed, order in [(1, "F"), (2, "C")]:
        img = np.asarray(extreme_values(dtype, SHAPE, seed), order=order)
        expected = clipped_quotients(img, factor)
        for count in (1, 2):
            threads(count)
            got = tb.downsample_with_averaging(img, factor, num_mips=1)
            got = got[0] if isinstance(got, list) else got
            assert got.dtype == expected.dtype and got.shape == expected.shape
            np.testing.assert_array_equal(got, expected, err_msg=f"{order} order, {count} threads")


@pytest.mark.parametrize("dtype", ["uint8", "int16"])
def test_windows_of_one_constant_value_average_to_it(dtype, threads):
    # All-minimum and all-maximum volumes: every quotient is exact, at the ends of the range.
    info = np.iinfo(dtype)
    threads(2)
    for value in (info.min, info.max):
        img = np.full(SHAPE, value, dtype=dtype, order="F")
        for factor in FACTORS:
            got = tb.downsample_with_averaging(img, factor, num_mips=1)
            got = got[0] if isinstance(got, list) else got
            assert (got == value).all(), (factor, value)
