"""Small examples worked out by hand from SEMANTICS.md, run on both the
reference models and the library.

Each expected value is derived in the comment next to it from the rule it
illustrates, not taken from any implementation. Arrays are written [x][y] (axis 0
first) unless noted.
"""

import numpy as np
import pytest

import models
import subject
from datagen import assert_exact

IMPLS = ["model", "library"]


@pytest.fixture(params=IMPLS)
def run(request):
    if request.param == "library":
        request.getfixturevalue("lib")
        return subject.run
    return models.run


def mips(run, op, img, factor, num_mips=1, sparse=False):
    return run(op, np.asarray(img), factor, num_mips=num_mips, sparse=sparse)


def check(got, expected_list, dtype):
    assert len(got) == len(expected_list)
    for g, e in zip(got, expected_list):
        assert_exact(g, np.asarray(e, dtype=dtype))


# ---------------------------------------------------------------------------
# shapes


def test_mip_shape_formula():
    # ceil(s / f**k) per axis
    assert models.mip_shape((5, 7, 3), (2, 2, 1), 1) == (3, 4, 3)
    assert models.mip_shape((5, 7, 3), (2, 2, 1), 2) == (2, 2, 3)
    assert models.mip_shape((5, 7, 3), (2, 2, 1), 3) == (1, 1, 3)
    assert models.mip_shape((10, 9), (3,), 2) == (2, 9)  # ceil(10/9)=2, missing factor = 1
    assert models.mip_shape((10, 9), (3, 1), 0) == (10, 9)


def test_windows_are_listed_in_scan_order():
    # 2x2 windows of a 3x2 array v[x, y] = 10x + y, replicate-padded to 4x2:
    # window of output (1, 0) holds (2,0), (3->2,0), (2,1), (3->2,1)
    v = np.add.outer(10 * np.arange(3), np.arange(2))
    win, valid = models.windows(v, (2, 2))
    assert win.shape == (2, 1, 4)
    assert win[0, 0].tolist() == [0, 10, 1, 11]
    assert win[1, 0].tolist() == [20, 20, 21, 21]
    assert valid[1, 0].tolist() == [True, False, True, False]


# ---------------------------------------------------------------------------
# averaging


def test_average_signed_truncates_toward_zero(run):
    # int8 block -1, -2, -3, -5: sum -11, -11 / 4 = -2.75 -> -2
    img = np.array([[-1, -3], [-2, -5]], dtype=np.int8)
    check(mips(run, "averaging", img, (2, 2)), [[[-2]]], np.int8)


def test_average_int8_accumulator_reset_cadence(run):
    # A lone -100 in 32x32 zeros, 5 mips of 2x2: the accumulator stays -100.
    # mip1 -100>>2 -> trunc(-25) ; mip2 -100/16 = -6.25 -> -6 ; mip3 -100/64 -> -1 ;
    # mip4 -100/256 -> 0, then the accumulator is shifted right by 8 (floor): -1 ;
    # mip5 -1/4 -> 0.
    img = np.zeros((32, 32), dtype=np.int8)
    img[0, 0] = -100
    out = mips(run, "averaging", img, (2, 2), num_mips=5)
    assert [int(o[0, 0]) for o in out] == [-25, -6, -1, 0, 0]
    assert [o.shape for o in out] == [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]


def test_average_uint8_loses_precision_once_per_cycle(run):
    # 32x32 uint8, 5 mips of 2x2. The four 16x16 quadrants sum to 253, 253, 253
    # and 255 + 254 = 509. mip4 renders sum >> 8: 0, 0, 0, 1; then the
    # accumulator itself is shifted right by 8 (floor): 0, 0, 0, 1. mip5 sums
    # those: 1 >> 2 = 0, although the exact mean 1268 / 1024 = 1.24 would give 1.
    img = np.zeros((32, 32), dtype=np.uint8)
    img[0, 0] = img[16, 0] = img[0, 16] = 253
    img[16, 16], img[17, 16] = 255, 254
    out = mips(run, "averaging", img, (2, 2), num_mips=5)
    assert out[3].tolist() == [[0, 0], [0, 1]]
    assert out[4].tolist() == [[0]]


def test_average_odd_edges_replicate(run):
    # uint8 5x4, v = 1..20 in F order (x fastest): v[x, y] = 1 + x + 5y.
    # Replicate padding: x=4 is repeated, so the last output column is the mean
    # of the two real voxels: (v[4,0] + v[4,1]) / 2 = (5 + 10) / 2 = 7.5 -> 7.
    img = np.arange(1, 21, dtype=np.uint8).reshape(5, 4, order="F")
    # mip1[i, j] = trunc(mean of v[2i:2i+2, 2j:2j+2]): [0,0]: (1+2+6+7)/4 = 4
    expected = [[4, 14], [6, 16], [7, 17]]
    check(mips(run, "averaging", img, (2, 2)), [expected], np.uint8)


def test_average_num_mips_1_equals_first_of_many(run):
    img = np.arange(1, 36, dtype=np.uint16).reshape(5, 7) * 1000
    one = mips(run, "averaging", img, (2, 2), num_mips=1)
    many = mips(run, "averaging", img, (2, 2), num_mips=3)
    assert_exact(one[0], many[0])


def test_average_wide_integers_exact(run):
    # int64: block MIN, MIN, MIN, MIN+1: sum 4*MIN + 1, /4 = MIN + 0.25 -> MIN + 1
    mn = np.iinfo(np.int64).min
    img = np.array([[mn, mn], [mn, mn + 1]], dtype=np.int64)
    check(mips(run, "averaging", img, (2, 2)), [[[mn + 1]]], np.int64)
    # uint64 max everywhere: every mip is max (no wrap, no float rounding)
    mx = np.iinfo(np.uint64).max
    img = np.full((4, 4, 2), mx, dtype=np.uint64)
    out = mips(run, "averaging", img, (2, 2, 1), num_mips=2)
    check(out, [np.full((2, 2, 2), mx), np.full((1, 1, 2), mx)], np.uint64)


def test_average_generic_clipped_mean_of_means(run):
    # factor 3 on a 1-D int array [1, 2, 3, 4, 9]: windows (1,2,3) and the
    # clipped (4,9): means 2 and 6.5 -> [2, 6]. mip2: the float means (2, 6.5)
    # -> 4.25 -> 4 (not (2 + 6) / 2).
    img = np.array([1, 2, 3, 4, 9], dtype=np.int32)
    check(mips(run, "averaging", img, (3,), num_mips=2), [[2, 6], [4]], np.int32)


def test_average_generic_float32_carried_in_float64(run):
    # factor (2,) on float32: the mean is rounded to float32 only when written.
    a = np.float32(16777216.0)  # 2**24
    b = np.float32(1.0)
    img = np.array([a, b], dtype=np.float32)
    # (2**24 + 1) / 2 = 8388608.5 -> float32 rounds to even: 8388608
    check(mips(run, "averaging", img, (2,)), [[8388608.0]], np.float32)


def test_average_float32_family_sums_in_float64(run):
    # four 3e38 would overflow a float32 sum; in float64 the mean is 3e38
    img = np.full((4, 4), 3e38, dtype=np.float32)
    out = mips(run, "averaging", img, (2, 2), num_mips=2)
    check(out, [np.full((2, 2), 3e38), np.full((1, 1), 3e38)], np.float32)


def test_average_sparse_ignores_zeros(run):
    # 1-D factor 2 (generic, clipped): [0,4 | 0,0 | 2,6 | 5] -> [4, 0, 4, 5]
    img = np.array([0, 4, 0, 0, 2, 6, 5], dtype=np.uint8)
    check(mips(run, "averaging", img, (2,), sparse=True), [[4, 0, 4, 5]], np.uint8)


def test_average_sparse_family_no_edge_bugs(run):
    # uint8 5x4 all 200, 2x2 sparse, 2 mips: every window holds only 200s, so
    # every voxel of every mip is 200 (tinybrain doubles the edge: 144).
    img = np.full((5, 4), 200, dtype=np.uint8)
    out = mips(run, "averaging", img, (2, 2), num_mips=2, sparse=True)
    check(out, [np.full((3, 2), 200), np.full((2, 1), 200)], np.uint8)


def test_average_sparse_mips_beyond_four(run):
    # uint8 32x32 all 100, sparse, 5 mips: the mean of nonzero voxels is 100 at
    # every mip (tinybrain: 0 at mip 5).
    img = np.full((32, 32), 100, dtype=np.uint8)
    out = mips(run, "averaging", img, (2, 2), num_mips=5, sparse=True)
    assert [int(o[0, 0]) for o in out] == [100] * 5


def test_average_all_ones_factor_copies(run):
    img = np.array([[1, 2], [3, 2**63 + 1]], dtype=np.uint64)
    check(mips(run, "averaging", img, (1, 1), num_mips=2), [img, img], np.uint64)


# ---------------------------------------------------------------------------
# mode


@pytest.mark.parametrize(
    "abcd, expected",
    [
        # a==b or a==c -> a ; else b==c -> b ; else d
        ((1, 2, 3, 4), 4),
        ((1, 1, 2, 2), 1),
        ((1, 2, 1, 2), 1),
        ((1, 2, 2, 1), 2),
        ((2, 1, 1, 2), 1),
        ((1, 2, 3, 3), 3),
    ],
)
def test_mode_2x2_rule(run, abcd, expected):
    a, b, c, d = abcd
    img = np.array([[a, c], [b, d]], dtype=np.int16)  # [x][y]: b is x+1, c is y+1
    check(mips(run, "segmentation", img, (2, 2)), [[[expected]]], np.int16)


@pytest.mark.parametrize(
    "abcd, expected",
    [
        ((0, 0, 3, 0), 3),  # first nonzero of a, b, c
        ((1, 0, 3, 0), 1),
        ((0, 5, 6, 0), 5),  # b before c in the fallback
        ((0, 0, 0, 0), 0),
        ((1, 2, 3, 4), 4),  # d != 0
        ((0, 2, 2, 4), 2),  # b == c, nonzero
        ((0, 0, 0, 7), 7),
    ],
)
def test_mode_2x2_sparse_rule(run, abcd, expected):
    a, b, c, d = abcd
    img = np.array([[[a], [c]], [[b], [d]]], dtype=np.uint32)  # x, y, z
    check(mips(run, "segmentation", img, (2, 2, 1), sparse=True), [[[[expected]]]], np.uint32)


@pytest.mark.parametrize("factor", [(2, 1, 2), (1, 2, 2)])
def test_mode_2x2_sparse_fallback_on_other_axes(run, factor):
    # a == 0, d == 0, b != c both nonzero: no rule but the last applies, and the
    # first nonzero of a, b, c is b, the +1 step on the FIRST factor-2 axis.
    p, q = [i for i, f in enumerate(factor) if f == 2]
    img = np.zeros((2, 2, 2), dtype=np.int32)
    b_at, c_at = [0, 0, 0], [0, 0, 0]
    b_at[p], c_at[q] = 1, 1
    img[tuple(b_at)], img[tuple(c_at)] = 5, 6
    out = mips(run, "segmentation", img, factor, sparse=True)[0]
    # the axis with factor 1 keeps its size: its slice 1 holds only zeros
    kept = [i for i, f in enumerate(factor) if f == 1][0]
    assert np.take(out, 0, axis=kept).ravel().tolist() == [5]
    assert np.take(out, 1, axis=kept).ravel().tolist() == [0]


def test_mode_2x2_odd_edge_takes_first_real_voxel(run):
    # 5x7 uint32 v[x, y] = 7x + y. Interior blocks have 4 distinct values -> d.
    # Edge x=4 (padded): a==b -> a = v[4, 2j]; edge y=6: a==c -> a = v[2i, 6].
    v = np.add.outer(7 * np.arange(5), np.arange(7)).astype(np.uint32)
    expected = [[8, 10, 12, 6], [22, 24, 26, 20], [28, 30, 32, 34]]
    check(mips(run, "segmentation", v, (2, 2)), [expected], np.uint32)


def test_mode_2x2_on_other_axes(run):
    # factor (1, 2, 2): a=(y,z), b=(y+1,z), c=(y,z+1); x is kept.
    img = np.zeros((2, 2, 2), dtype=np.uint8)
    img[0] = [[1, 2], [2, 3]]  # [y][z]: a=1, c=2, b=2, d=3 -> b==c -> 2
    img[1] = [[1, 2], [3, 4]]  # all distinct -> d=4
    check(mips(run, "segmentation", img, (1, 2, 2)), [[[[2]], [[4]]]], np.uint8)


def cube(values):
    """8 values in scan order (x fastest) -> a 2x2x2 array."""
    return np.asarray(values).reshape(2, 2, 2, order="F")


@pytest.mark.parametrize(
    "values, sparse, expected",
    [
        ((1, 2, 3, 4, 5, 6, 7, 8), False, 1),  # all distinct -> earliest
        ((1, 2, 2, 1, 3, 3, 4, 4), False, 1),  # 4 pairs -> 1 occurs first
        ((5, 6, 6, 5, 5, 6, 6, 5), False, 5),  # 4 vs 4 -> 5 occurs first
        ((3, 4, 5, 6, 7, 8, 9, 9), False, 9),  # the only pair
        ((0, 0, 0, 0, 7, 7, 3, 3), False, 0),  # 0 is the most frequent
        ((0, 0, 0, 0, 7, 7, 3, 3), True, 7),  # without zeros: 7 and 3 tie, 7 first
        ((9, 0, 0, 0, 0, 0, 0, 0), False, 0),
        ((9, 0, 0, 0, 0, 0, 0, 0), True, 9),
        ((0,) * 8, True, 0),
        ((2, 1, 1, 3, 4, 5, 6, 2), False, 2),  # 2 and 1 tie, 2 occurs first
    ],
)
def test_mode_2x2x2_rule(run, values, sparse, expected):
    img = cube(values).astype(np.uint16)
    check(mips(run, "segmentation", img, (2, 2, 2), sparse=sparse), [[[[expected]]]], np.uint16)


def test_mode_2x2x2_odd_edges_replicate(run):
    # 3x2x2: the window of output x=1 holds voxels x=2 twice each; values
    # x=2: (y,z) = (0,0)->4, (1,0)->5, (0,1)->5, (1,1)->6 -> 5 counted 4 times.
    img = np.zeros((3, 2, 2), dtype=np.int8)
    img[2] = [[4, 5], [5, 6]]  # [y][z]
    img[:2] = 1
    out = mips(run, "segmentation", img, (2, 2, 2))
    check(out, [[[[1]], [[5]]]], np.int8)


def test_mode_generic_clipped_and_ties(run):
    # factor 3: (5,6,6) -> 6 ; (5,6,7) -> 5 (tie, earliest) ; clipped (8) -> 8
    img = np.array([5, 6, 6, 5, 6, 7, 8], dtype=np.int64)
    check(mips(run, "segmentation", img, (3,)), [[6, 5, 8]], np.int64)
    # factor 4: (1,2,2,1) -> 1 (tie, earliest first occurrence)
    img = np.array([1, 2, 2, 1], dtype=np.int64)
    check(mips(run, "segmentation", img, (4,)), [[1]], np.int64)


def test_mode_generic_scan_order_is_x_fastest(run):
    # factor (3, 3) window listed x fastest: (x0,y0)=4, (x1,y0)=5, (x2,y0)=6,
    # then 7, 7, 5 / 6, 9, 9 ... counts: 5:2, 6:2, 7:2, 9:2, 4:1. 5 occurs first.
    win = [[4, 5, 6], [7, 7, 5], [6, 9, 9]]  # rows are y, columns x
    img = np.array(win, dtype=np.uint8).T  # -> [x][y]
    check(mips(run, "segmentation", img, (3, 3)), [[[5]]], np.uint8)


def test_mode_generic_sparse(run):
    img = np.array([0, 0, 3, 0, 0, 0, 4, 4, 0], dtype=np.uint8)
    check(mips(run, "segmentation", img, (3,), sparse=True), [[3, 0, 4]], np.uint8)


def test_mode_sparse_negative_zero_is_a_label(run):
    # bitwise labels: only +0.0 (all bits 0) is background; -0.0 is a label
    img = np.array([-0.0, 0.0, 0.0, 0.0, 0.0, 0.0], dtype=np.float32)
    out = mips(run, "segmentation", img, (3,), sparse=True)[0]
    assert out.tolist() == [0.0, 0.0] and np.signbit(out[0]) and not np.signbit(out[1])


def test_mode_floats_compare_bits(run):
    nan = np.float64(np.nan)
    # (nan, nan, 1) -> nan ; (0.0, -0.0, -0.0) -> -0.0 (bits differ from +0.0)
    img = np.array([nan, nan, 1.0, 0.0, -0.0, -0.0], dtype=np.float64)
    out = mips(run, "segmentation", img, (3,))[0]
    assert np.isnan(out[0])
    assert out[1] == 0 and np.signbit(out[1])


def test_mode_of_modes(run):
    # 4x1 labels, factor (2,) twice vs (4,) once: mode of modes.
    # (1,2 | 3,3): mip1 = (1, 3) [(1,2) tie -> 1] ; mip2 = mode(1,3) = 1.
    # A direct mode over 4 would give 3.
    img = np.array([1, 2, 3, 3], dtype=np.uint8)
    check(mips(run, "segmentation", img, (2,), num_mips=2), [[1, 3], [1]], np.uint8)


# ---------------------------------------------------------------------------
# min / max / striding


def test_max_min_nan_and_clipping(run):
    img = np.array([1.0, np.nan, 3.0, -2.0, 7.0], dtype=np.float32)
    # windows (1, nan) (3, -2) (7): max -> nan, 3, 7 ; min -> nan, -2, 7
    mx = mips(run, "max_pooling", img, (2,))[0]
    mn = mips(run, "min_pooling", img, (2,))[0]
    assert np.isnan(mx[0]) and mx[1:].tolist() == [3.0, 7.0]
    assert np.isnan(mn[0]) and mn[1:].tolist() == [-2.0, 7.0]


def test_max_min_clipped_2d(run):
    # 3x4 uint8 arange (C order): v[x, y] = 4x + y. factor (2, 2):
    # max of rows x in {0,1}: [[5, 7]], of row x=2 alone: [[9, 11]]
    v = np.arange(12, dtype=np.uint8).reshape(3, 4)
    check(mips(run, "max_pooling", v, (2, 2)), [[[5, 7], [9, 11]]], np.uint8)
    check(mips(run, "min_pooling", v, (2, 2)), [[[0, 2], [8, 10]]], np.uint8)


def test_striding(run):
    # 5x7 v = 7x + y, factor (2, 2), 2 mips: v[2i, 2j] then v[4i, 4j]
    v = np.add.outer(7 * np.arange(5), np.arange(7)).astype(np.int32)
    expected1 = [[0, 2, 4, 6], [14, 16, 18, 20], [28, 30, 32, 34]]
    expected2 = [[0, 4], [28, 32]]
    check(mips(run, "striding", v, (2, 2), num_mips=2), [expected1, expected2], np.int32)


@pytest.mark.parametrize(
    "op", ["averaging", "segmentation", "min_pooling", "max_pooling", "striding"]
)
def test_num_mips_zero_and_all_ones(run, op):
    img = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    assert mips(run, op, img, (2, 2, 2), num_mips=0) == []
    check(mips(run, op, img, (1, 1, 1), num_mips=3), [img] * 3, np.int16)
