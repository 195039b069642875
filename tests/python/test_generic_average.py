"""One mip of averaging with a factor outside the 2x2 / 2x2x2 families, on integers:
each clipped window's sum divided by its count of real voxels, truncated toward zero
(SEMANTICS.md, "Average pooling": the float64 mean, truncated, is that quotient for one
mip). The library divides in f32, in i32 lanes, for windows of fewer than 128 values of
8- and 16-bit integers, and in f64 otherwise (src/kernels/average.rs,
`one_truncated_mean`); these cases lie on both sides of that line, with sums at the
extremes of each dtype, and are checked against exact integer arithmetic. Integer min
and max pooling and these means run with their axes in the input's memory order; the
last test feeds them inputs of four layouts and writes outputs of two.
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


def clipped_extremes(img, factor, take_max):
    """max (min) over each clipped window: pad with the identity, reduce blocks."""
    info = np.iinfo(img.dtype)
    pad = [(0, -size % f) for size, f in zip(img.shape, factor)]
    padded = np.pad(img, pad, constant_values=info.min if take_max else info.max)
    blocks = [n for size, f in zip(padded.shape, factor) for n in (size // f, f)]
    reduce = np.max if take_max else np.min
    return reduce(padded.reshape(blocks), axis=tuple(range(1, 2 * len(factor), 2)))


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint32", "int64"])
@pytest.mark.parametrize("factor", [(3, 3, 1), (1, 1, 2), (3, 1, 7)])
def test_integer_extremes_of_any_layout_into_any_layout(dtype, factor, threads):
    # Integer min / max and one-mip integer means run with their axes in the input's
    # memory order (src/kernels/mod.rs, in_memory_order); the outputs keep theirs.
    img = extreme_values(dtype, SHAPE, 3)
    inputs = {
        "F": np.asfortranarray(img),
        "C": np.ascontiguousarray(img),
        "axes 1, 2, 0": np.ascontiguousarray(img.transpose(1, 2, 0)).transpose(2, 0, 1),
        "negative": np.ascontiguousarray(img[::-1, :, ::-1])[::-1, :, ::-1],
    }
    shapes = [tb.mip_shape(SHAPE, factor, k) for k in (1, 2)]
    threads(2)
    for take_max, pool in [(True, tb.downsample_with_max_pooling), (False, tb.downsample_with_min_pooling)]:
        mip1 = clipped_extremes(img, factor, take_max)
        expected = [mip1, clipped_extremes(mip1, factor, take_max)]
        for name, layout in inputs.items():
            assert np.array_equal(layout, img)
            for out_order in "FC":
                out = [np.zeros(shape, dtype=dtype, order=out_order) for shape in shapes]
                pool(layout, factor, num_mips=2, out=out)
                for k, (got, want) in enumerate(zip(out, expected)):
                    np.testing.assert_array_equal(got, want, err_msg=f"{name} into {out_order}, mip {k + 1}")
    if np.dtype(dtype).itemsize == 8:
        return  # 64-bit means are float64 means, not exact quotients (SEMANTICS.md)
    means = clipped_quotients(img, factor)
    for name, layout in inputs.items():
        for out_order in "FC":
            out = [np.zeros(shapes[0], dtype=dtype, order=out_order)]
            tb.downsample_with_averaging(layout, factor, num_mips=1, out=out)
            np.testing.assert_array_equal(out[0], means, err_msg=f"mean of {name} into {out_order}")
