"""The ctypes module and the library's helpers: version, threads, packed
buffers, caller outputs with their own strides, odd numpy inputs."""

import concurrent.futures
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import models
import tinybrain_ctypes as tb
from datagen import assert_exact, assert_mips, labels, random_values, with_layout

pytestmark = pytest.mark.usefixtures("lib")

REPO = pathlib.Path(__file__).resolve().parents[2]
OPS = list(tb.OPERATIONS)


def run(op, img, factor, num_mips=1, out=None):
    if op == "averaging":
        return tb.downsample_with_averaging(img, factor, num_mips, out=out)
    if op == "segmentation":
        return tb.downsample_segmentation(img, factor, num_mips=num_mips, out=out)
    return getattr(tb, "downsample_with_" + op)(img, factor, num_mips, out=out)


def test_version_matches_cargo_toml():
    cargo = (REPO / "Cargo.toml").read_text()
    version = re.search(r'^version\s*=\s*"([^"]+)"', cargo, re.M).group(1)
    assert tb.version() == version


def test_num_threads(threads):
    for n in (1, 2, 3):
        threads(n)
        assert tb.get_num_threads() == n
    threads(0)
    assert tb.get_num_threads() >= 1


def _child(code, **env):
    full_env = dict(os.environ, **env)
    return subprocess.run(
        [sys.executable, "-c", "import sys; sys.path[:0] = %r\n" % sys.path[:4] + code],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
    )


def test_num_threads_environment_variable():
    proc = _child(
        "import tinybrain_ctypes as tb; print(tb.get_num_threads())", TINYBRAIN_NUM_THREADS="3"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == "3"


def test_missing_library_message(tmp_path):
    missing = tmp_path / "nowhere" / "libtinybrain.so"
    proc = _child("import tinybrain_ctypes as tb; tb.version()", TINYBRAIN_LIB=str(missing))
    assert proc.returncode != 0
    assert str(missing) in proc.stderr and "cargo build --release" in proc.stderr


@pytest.mark.parametrize("op", OPS)
def test_packed_equals_unpacked(rng, op):
    img = (
        labels(rng, (17, 12, 5, 2), "uint32", 4)
        if op == "segmentation"
        else random_values(rng, (17, 12, 5, 2), "float32")
    )
    for factor, n in (((2, 2), 4), ((2, 2, 2), 3), ((3, 1, 2), 2), ((1, 1), 2)):
        buf, mips = tb.downsample_packed(op, img, factor, n)
        assert buf.size == tb.pyramid_len(img.shape, factor, n)
        expected = run(op, img, factor, n)
        assert_mips(mips, expected)
        start = 0
        for m in expected:  # mip after mip, each Fortran-ordered
            assert_exact(buf[start : start + m.size], m.ravel(order="F"))
            start += m.size


def _big_shape(layout, shape):
    big = tuple(2 * s + 1 for s in shape)
    return (big[1], big[0], big[2]) if layout == "perm" else big


def _output_view(big, layout, shape):
    """A view of `big` (see _big_shape) with the given shape and layout."""
    if layout == "C":  # a C-ordered block: non-Fortran strides
        return big[tuple(slice(0, s) for s in shape)]
    if layout == "perm":  # y stored slowest, every other element
        return big[1 : 2 * shape[1] : 2, 1 : 2 * shape[0] : 2, 1 : 2 * shape[2] : 2].transpose(
            1, 0, 2
        )
    view = big[tuple(slice(1, 2 * s, 2) for s in shape)]  # every other element
    if layout == "neg":
        return view[::-1, :, ::-1]
    return view


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("layout", ["C", "step", "neg", "perm"])
def test_outputs_with_their_own_strides(rng, op, layout):
    """out= views into larger arrays (C-ordered blocks, every other element,
    reversed axes): the mips are written there and nothing around them changes."""
    img = random_values(rng, (13, 10, 3), "int16")
    expected = run(op, img, (2, 2, 1), 3)
    bigs, outs, masks = [], [], []
    for m in expected:
        big_shape = _big_shape(layout, m.shape)
        big = np.full(big_shape, -7, dtype=m.dtype)
        marker = np.zeros(big_shape, dtype=bool)
        _output_view(marker, layout, m.shape)[...] = True
        bigs.append(big)
        masks.append(marker)
        outs.append(_output_view(big, layout, m.shape))
    got = run(op, img, (2, 2, 1), 3, out=outs)
    assert all(g is o for g, o in zip(got, outs))
    assert_mips(got, expected)
    for big, marker in zip(bigs, masks):
        assert (big[~marker] == -7).all(), "wrote outside the output view"


def test_output_with_unaligned_strides_still_works(rng):
    """A field of a packed record array has a byte stride that is not a whole
    number of elements: the wrapper computes into a temporary and copies."""
    img = random_values(rng, (8, 6), "uint16")
    rec = np.zeros((4, 3), dtype=[("a", "u1"), ("b", "<u2")])
    got = tb.downsample_with_max_pooling(img, (2, 2), out=[rec["b"]])
    assert_exact(got[0], models.downsample_with_max_pooling(img, (2, 2))[0])
    assert (rec["a"] == 0).all()


def test_odd_numpy_inputs(rng):
    img = random_values(rng, (9, 7, 2), "int32")
    expected = models.downsample_with_averaging(img, (2, 2), 2)
    # non-native byte order: converted, values kept
    assert_mips(tb.downsample_with_averaging(img.astype(">i4"), (2, 2), 2), expected)
    # a field of a packed record array: byte strides not a multiple of 4
    rec = np.zeros(img.shape, dtype=[("pad", "u1"), ("v", "<i4")])
    rec["v"] = img
    assert rec["v"].strides[0] % 4
    assert_mips(tb.downsample_with_averaging(rec["v"], (2, 2), 2), expected)
    # factor spellings: list, numpy array, floats equal to integers, trailing 1s
    for factor in ([2, 2], np.array([2, 2]), (2.0, 2.0), (2, 2, 1, 1, 1)):
        assert_mips(tb.downsample_with_averaging(img, factor, 2), expected)
    # read-only input
    ro = img.copy()
    ro.flags.writeable = False
    assert_mips(tb.downsample_with_averaging(ro, (2, 2), 2), expected)
    # outputs are Fortran-ordered new arrays of the input's dtype
    for m in tb.downsample_with_averaging(img, (2, 2), 2):
        assert m.flags.f_contiguous and m.dtype == img.dtype


def test_zero_strides_input(rng):
    """An input may repeat memory (stride 0 on an axis)."""
    row = random_values(rng, (1, 9, 3), "uint8")
    img = np.broadcast_to(row, (12, 9, 3))
    assert img.strides[0] == 0
    for op in OPS:
        expected = models.run(op, np.array(img), (2, 2, 2), 2)
        assert_mips(run(op, img, (2, 2, 2), 2), expected, what=op)


def test_mip_shape_beyond_the_last_pixel():
    assert tb.mip_shape((5, 7, 3), (2, 2, 1), 3) == (1, 1, 3)
    assert tb.mip_shape((5, 7, 3), (2, 2, 1), 200) == (1, 1, 3)  # 2**200 overflows: still 1
    assert tb.mip_shape((5, 7), (2,), 0) == (5, 7)
    assert tb.pyramid_len((4, 4), (2, 2), 0) == 0


def test_concurrent_calls_from_python_threads(rng):
    """ctypes releases the GIL: calls from several threads run at once and each
    gets its own result."""
    imgs = [random_values(rng, (130, 97, 3), "uint16") for _ in range(8)]
    expected = [tb.downsample_with_averaging(i, (2, 2), 3) for i in imgs]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: tb.downsample_with_averaging(i, (2, 2), 3), imgs * 3))
    for k, g in enumerate(got):
        assert_mips(g, expected[k % len(imgs)])


def test_large_pyramid_runs(rng):
    """A realistic size end to end (1024x1024x8 uint8, 5 mips), checked against
    the model on one z slice (slices are independent for a 2x2 factor)."""
    img = random_values(rng, (1024, 1024, 8), "uint8")
    got = tb.downsample_with_averaging(with_layout(img, "C"), (2, 2, 1), 5)
    slice_model = models.downsample_with_averaging(img[:, :, 5], (2, 2), 5)
    assert_mips([g[:, :, 5] for g in got], slice_model)
