"""Property-based tests (hypothesis): the library against the reference models
over random shapes (1-5 axes, sizes from 1, odd included), factors (1-4 per
axis, plus the 2x2 / 2x2x2 families on random axes), 0-4 mips, every dtype,
memory layouts (C, F, transposed, negative, non-unit and zero strides) and
thread counts. Array contents come from a drawn seed (numpy generators), so
hypothesis shrinks the shape, factor and options, and prints the seed.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import models
import subject
import tinybrain_ctypes as tb
from datagen import (
    LAYOUTS,
    assert_close,
    assert_exact,
    assert_mips,
    assert_values,
    labels,
    random_values,
    sparsify,
    with_layout,
)

pytestmark = pytest.mark.usefixtures("lib")

DTYPES = [d.name for d in models.ALL_DTYPES]
OPS = ["averaging", "segmentation", "min_pooling", "max_pooling", "striding"]
MAX_ELEMENTS = 1200
MAX_WINDOW = 64


@st.composite
def shapes(draw, max_elements=MAX_ELEMENTS, max_size=9, max_ndim=5):
    ndim = draw(st.integers(1, max_ndim))
    shape = []
    for _ in range(ndim):
        room = max_elements // max(1, int(np.prod(shape)))
        shape.append(draw(st.integers(1, max(1, min(max_size, room)))))
    return tuple(shape)


@st.composite
def factors(draw, ndim):
    kind = draw(st.sampled_from(["2x2", "2x2x2", "any", "any", "ones"]))
    if kind in ("2x2", "2x2x2") and ndim >= len(kind) // 2 + 1:
        k = 2 if kind == "2x2" else 3
        axes = draw(st.permutations(range(ndim)))[:k]
        return tuple(2 if i in axes else 1 for i in range(ndim))
    if kind == "ones":
        return (1,) * ndim
    factor = [draw(st.integers(1, 4)) for _ in range(ndim)]
    while int(np.prod(factor)) > MAX_WINDOW:  # keep the mode model's windows small
        factor[int(np.argmax(factor))] -= 1
    # sometimes leave trailing 1s out: missing entries mean 1
    cut = draw(st.integers(0, ndim))
    while len(factor) > max(cut, 1) and factor[-1] == 1:
        factor.pop()
    return tuple(factor)


@st.composite
def cases(draw, op):
    shape = draw(shapes())
    return dict(
        shape=shape,
        factor=draw(factors(len(shape))),
        num_mips=draw(st.integers(0, 8)),
        dtype=draw(st.sampled_from(DTYPES)),
        layout=draw(st.sampled_from(LAYOUTS + ("bcast",))),
        sparse=op in ("averaging", "segmentation") and draw(st.booleans()),
        seed=draw(st.integers(0, 2**32 - 1)),
        k=draw(st.integers(1, 6)),  # labels for mode pooling
        content=draw(st.sampled_from(["full", "small", "extreme"])),
    )


def make_input(op, case):
    """(array handed to the library, the same values as a plain array)."""
    rng = np.random.default_rng(case["seed"])
    shape, dtype = case["shape"], np.dtype(case["dtype"])
    if op == "segmentation":
        img = labels(rng, shape, dtype, case["k"])
    elif case["content"] == "small" and dtype.kind != "f":
        img = rng.integers(0, 4, size=shape).astype(dtype)
    elif case["content"] == "extreme" and dtype.kind != "f":
        info = np.iinfo(dtype)
        img = rng.choice(
            np.array([info.min, info.max, info.max - 1, 0, 1], dtype=dtype), size=shape
        )
    else:
        img = random_values(rng, shape, dtype)
        if dtype.kind == "f" and op != "averaging":
            img[rng.random(shape) < 0.1] = np.nan
    if case["sparse"]:
        img = sparsify(rng, img, rng.choice([0.3, 0.9]))
    if case["layout"] == "bcast":
        axis = int(np.argmax(shape))
        img = np.broadcast_to(np.take(img, [0], axis=axis), shape)  # stride 0 on that axis
        return img, np.array(img)
    return with_layout(img, case["layout"], rng), img


def generic_integer_average(factor, ndim, dtype, sparse):
    f = models.pad_factor(factor, ndim)
    return (
        np.dtype(dtype).kind in "ui"
        and not sparse
        and models.family_axes(f) is None
        and any(x != 1 for x in f)
    )


def check_against_model(op, case, got, plain):
    expected = models.run(op, plain, case["factor"], case["num_mips"], case["sparse"])
    dtype = plain.dtype
    if op == "averaging" and dtype.kind == "f":
        finite = np.abs(plain[np.isfinite(plain)])
        scale = float(finite.max()) if finite.size else 0.0
        rtol = 1e-6 if dtype == np.float32 else 1e-12
        assert_mips(got, expected, assert_close, rtol=rtol, scale=scale)
    elif op == "averaging" and generic_integer_average(case["factor"], plain.ndim, dtype, False):
        # the float64 mean may land a rounding error away: accept trunc(mean +- tol)
        carried = models.averaging_generic_float64(plain, case["factor"], case["num_mips"])
        window = int(np.prod(models.pad_factor(case["factor"], plain.ndim)))
        tol = 4 * window * np.finfo(np.float64).eps * float(np.abs(plain.astype(np.float64)).max())
        assert [g.shape for g in got] == [e.shape for e in expected]
        for g, e, c in zip(got, expected, carried):
            assert g.dtype == e.dtype
            diff = g != e
            if diff.any():
                lo, hi = np.trunc(c - tol)[diff], np.trunc(c + tol)[diff]
                gd = g[diff].astype(np.float64)
                slack = np.spacing(np.maximum(np.abs(lo), np.abs(hi)))
                assert ((gd >= lo - slack) & (gd <= hi + slack)).all(), (g[diff], c[diff])
    elif op in ("min_pooling", "max_pooling"):
        assert_mips(got, expected, assert_values)
    else:
        assert_mips(got, expected, assert_exact)
    return expected


def run_case(op, case):
    img, plain = make_input(op, case)
    got = subject.run(op, img, case["factor"], case["num_mips"], case["sparse"])
    return img, plain, got


@pytest.mark.parametrize("op", OPS)
@given(data=st.data())
def test_library_matches_model(op, data):
    case = data.draw(cases(op))
    _, plain, got = run_case(op, case)
    check_against_model(op, case, got, plain)
    for k, g in enumerate(got, start=1):
        assert g.shape == models.mip_shape(plain.shape, case["factor"], k)


@pytest.mark.parametrize("op", OPS)
@given(data=st.data())
def test_six_to_eight_axes(op, data):
    """Up to TB_MAX_NDIM = 8 axes, every rule still applies on each axis."""
    case = data.draw(cases(op))
    shape = data.draw(st.lists(st.integers(1, 3), min_size=6, max_size=8).map(tuple))
    factor = data.draw(
        st.one_of(
            factors(len(shape)),
            st.lists(st.integers(1, 2), min_size=1, max_size=len(shape)).map(tuple),
        )
    )
    case.update(shape=shape, factor=factor)
    _, plain, got = run_case(op, case)
    check_against_model(op, case, got, plain)


@st.composite
def big_cases(draw, op):
    """Larger arrays for the thread test, so that work really is split."""
    ndim = draw(st.integers(2, 4))
    shape = (draw(st.integers(30, 300)), draw(st.integers(30, 300)))
    shape += tuple(draw(st.integers(1, 5)) for _ in range(ndim - 2))
    shape = tuple(np.random.default_rng(draw(st.integers(0, 99))).permutation(shape))
    case = draw(cases(op))
    case.update(shape=shape, factor=draw(factors(len(shape))))
    return case


@pytest.mark.parametrize("op", OPS)
@given(data=st.data())
def test_threads_do_not_change_results(op, data):
    """Results are bit-identical with 1, 2 and the default number of threads."""
    case = data.draw(big_cases(op))
    img, _ = make_input(op, case)
    results = []
    try:
        for n in (1, 2, 0):
            tb.set_num_threads(n)
            results.append(subject.run(op, img, case["factor"], case["num_mips"], case["sparse"]))
    finally:
        tb.set_num_threads(0)
    for other in results[1:]:
        assert_mips(other, results[0], assert_exact)


@pytest.mark.parametrize("op", OPS)
@given(data=st.data())
def test_layout_does_not_change_results(op, data):
    """Any memory layout of the same array gives bit-identical results (floats
    included), and so do the packed entry point and caller outputs with their
    own strides."""
    case = data.draw(cases(op))
    _, plain = make_input(op, case)
    args = (case["factor"], case["num_mips"], case["sparse"])
    reference = subject.run(op, np.asfortranarray(plain), *args)
    layout = data.draw(st.sampled_from(LAYOUTS))
    assert_mips(subject.run(op, with_layout(plain, layout), *args), reference, assert_exact)

    _, packed = tb.downsample_packed(op, with_layout(plain, layout), *args)
    assert_mips(packed, reference, assert_exact)

    out_layout = data.draw(st.sampled_from(LAYOUTS))
    outs = [with_layout(np.zeros_like(r), out_layout) for r in reference]
    got = subject.run(op, plain, *args, out=outs)
    assert all(g is o for g, o in zip(got, outs))
    assert_mips(got, reference, assert_exact)


@given(shape=shapes(max_elements=10**6, max_size=1000), data=st.data())
def test_mip_shape_helpers(shape, data):
    """tb_mip_shape / tb_mip_len / tb_pyramid_len against ceil(s / f**k)."""
    factor = tuple(data.draw(st.integers(1, 7)) for _ in shape)
    num_mips = data.draw(st.integers(0, 12))
    total = 0
    for k in range(num_mips + 1):
        expected = tuple(-(-s // f**k) for s, f in zip(shape, factor))
        assert tb.mip_shape(shape, factor, k) == expected
        assert tb.mip_len(shape, factor, k) == int(np.prod(expected))
        total += int(np.prod(expected)) if k else 0
    assert tb.pyramid_len(shape, factor, num_mips) == total
