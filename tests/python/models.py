"""Reference models of /work/shared/SEMANTICS.md, written from the spec alone.

Small, slow and plain on purpose: every function follows one paragraph of the
spec, works on any number of axes and returns a list of numpy arrays (mip 1
first), like the library. Integer arithmetic that must be exact uses Python
ints (object arrays); floats use float64 as the spec says.

Axis 0 is x. "Scan order" means axis 0 fastest.
"""

import numpy as np

INT_DTYPES = tuple(
    np.dtype(t)
    for t in (np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64)
)
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
ALL_DTYPES = INT_DTYPES + FLOAT_DTYPES


# ----------------------------------------------------------------------------
# shapes, factors, windows


def pad_factor(factor, ndim):
    """Missing trailing factor entries mean 1 (extra trailing 1s are dropped)."""
    factor = tuple(int(f) for f in factor)
    if len(factor) > ndim:
        if any(f != 1 for f in factor[ndim:]):
            raise ValueError("factor has more non-1 entries than the array has axes")
        factor = factor[:ndim]
    return factor + (1,) * (ndim - len(factor))


def mip_shape(shape, factor, mip):
    """ceil(s / f**mip) on every axis."""
    factor = pad_factor(factor, len(shape))
    return tuple(-(-s // f**mip) for s, f in zip(shape, factor))


def family_axes(factor):
    """The axes of the "2x2" (two axes) or "2x2x2" (three axes) family, or None.

    Factor 2 on exactly two (three) axes and 1 on all others.
    """
    if any(f not in (1, 2) for f in factor):
        return None
    twos = [i for i, f in enumerate(factor) if f == 2]
    return twos if len(twos) in (2, 3) else None


def windows(arr, factor):
    """Cut `arr` into factor-sized windows.

    Returns (win, valid). win has shape out_shape + (prod(factor),): each output
    voxel's window listed in scan order (axis 0 fastest), with the array padded
    at the far end of every axis by repeating its last element (replicate
    padding). valid has the same shape and is False for padded positions, so a
    caller wanting the CLIPPED window masks them out.
    """
    factor = tuple(factor)
    n = arr.ndim
    out_shape = tuple(-(-s // f) for s, f in zip(arr.shape, factor))
    pad = [(0, o * f - s) for s, f, o in zip(arr.shape, factor, out_shape)]
    padded = np.pad(arr, pad, mode="edge")
    valid = np.pad(np.ones(arr.shape, dtype=bool), pad, mode="constant", constant_values=False)

    def split(a):
        # (o0*f0, o1*f1, ...) -> (o0, f0, o1, f1, ...)
        a = a.reshape(tuple(x for o, f in zip(out_shape, factor) for x in (o, f)))
        # -> (o0, o1, ..., f_{n-1}, ..., f1, f0): flattening the window axes in
        # C order then makes axis 0 the fastest, i.e. scan order.
        order = [2 * i for i in range(n)] + [2 * i + 1 for i in reversed(range(n))]
        return a.transpose(order).reshape(out_shape + (-1,))

    return split(padded), split(valid)


def _trunc_div(a, b):
    """Integer division truncated toward zero, for Python ints."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


_trunc_div_v = np.frompyfunc(_trunc_div, 2, 1)
_floor_shift_v = np.frompyfunc(lambda a, s: a >> s, 2, 1)


def _to_dtype(values, dtype):
    """Object array of Python ints (in range) -> dtype, exactly."""
    return np.array(values.tolist() if values.ndim else int(values), dtype=dtype).reshape(
        values.shape
    )


def _is_int(dtype):
    return np.dtype(dtype).kind in "ui"


# ----------------------------------------------------------------------------
# average pooling


def _cadence(dtype, nfam):
    """(bits per mip, cycle length or None) of tinybrain's accumulator scheme.

    2x2: shift 2*((m % 4) + 1) for 8- and 16-bit types.
    2x2x2: 3*((m % 8) + 1) for 8-bit, 3*((m % 5) + 1) for 16-bit.
    32/64-bit: exact accumulation, never reset (cycle None).
    """
    bits = np.dtype(dtype).itemsize * 8
    if bits == 8:
        return nfam, (4 if nfam == 2 else 8)
    if bits == 16:
        return nfam, (4 if nfam == 2 else 5)
    return nfam, None


def _avg_family_int(img, factor, num_mips, nfam):
    per, cycle = _cadence(img.dtype, nfam)
    acc = img.astype(object)
    outs = []
    for m in range(num_mips):
        # replicate-padded block sum of the (possibly reset) accumulator
        acc = windows(acc, factor)[0].sum(axis=-1)
        shift = per * ((m % cycle) + 1) if cycle else per * (m + 1)
        outs.append(_to_dtype(_trunc_div_v(acc, 1 << shift), img.dtype))
        if cycle and m % cycle == cycle - 1:
            # precision is dropped once per cycle, arithmetic (floor) shift
            acc = _floor_shift_v(acc, per * cycle)
    return outs


def _avg_family_float(img, factor, num_mips, nfam):
    acc = img.astype(np.float64)
    outs = []
    for m in range(num_mips):
        acc = windows(acc, factor)[0].sum(axis=-1)
        outs.append((acc / float(2 ** (nfam * (m + 1)))).astype(img.dtype))
    return outs


def _write_mean(mean, dtype):
    """float64 -> dtype: truncation toward zero for integers, rounding for floats.

    A mean of in-range integers is in range; only float64 rounding of 64-bit
    values (2**63 - 1 becomes 2**63) can push it past the end, where it is the
    dtype's extreme."""
    if not _is_int(dtype):
        return mean.astype(dtype)
    info = np.iinfo(dtype)
    t = np.trunc(mean)
    high, low = t >= float(info.max), t <= float(info.min)
    out = np.where(high | low, 0.0, t).astype(dtype)
    out[high] = info.max
    out[low] = info.min
    return out


def _avg_generic(img, factor, num_mips):
    prev = img.astype(np.float64)
    outs = []
    for _ in range(num_mips):
        win, valid = windows(prev, factor)
        prev = np.where(valid, win, 0.0).sum(axis=-1) / valid.sum(axis=-1)
        outs.append(_write_mean(prev, img.dtype))
    return outs


def _avg_sparse(img, factor, num_mips):
    fam = family_axes(factor)
    is_int = _is_int(img.dtype)
    num = img.astype(object) if is_int else img.astype(np.float64)
    den = (img != 0).astype(object)
    outs = []
    for _ in range(num_mips):
        if fam:  # same replicate padding as the non-sparse family path
            num = windows(num, factor)[0].sum(axis=-1)
            den = windows(den, factor)[0].sum(axis=-1)
        else:  # clipped window
            win, valid = windows(num, factor)
            num = np.where(valid, win, 0).sum(axis=-1)
            win, valid = windows(den, factor)
            den = np.where(valid, win, 0).sum(axis=-1)
        empty = den == 0
        safe_den = np.where(empty, 1, den)
        if is_int:
            q = np.where(empty, 0, _trunc_div_v(num, safe_den))
            outs.append(_to_dtype(q, img.dtype))
        else:
            q = np.asarray(num, dtype=np.float64) / np.asarray(safe_den, dtype=np.float64)
            outs.append(np.where(empty, 0.0, q).astype(img.dtype))
    return outs


def downsample_with_averaging(img, factor, num_mips=1, sparse=False):
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf, float32 overflow: IEEE
        return _averaging(img, factor, num_mips, sparse)


def _averaging(img, factor, num_mips, sparse):
    img = np.asarray(img)
    factor = pad_factor(factor, img.ndim)
    if all(f == 1 for f in factor):
        return [img.copy() for _ in range(num_mips)]
    if sparse:
        return _avg_sparse(img, factor, num_mips)
    fam = family_axes(factor)
    if fam and _is_int(img.dtype):
        return _avg_family_int(img, factor, num_mips, len(fam))
    if fam:
        return _avg_family_float(img, factor, num_mips, len(fam))
    return _avg_generic(img, factor, num_mips)


def averaging_generic_float64(img, factor, num_mips):
    """The un-rounded float64 means that the generic path carries between mips.

    Tests use it to tell a genuine mismatch from an integer that sits within a
    rounding error of a truncation boundary.
    """
    img = np.asarray(img)
    factor = pad_factor(factor, img.ndim)
    prev = img.astype(np.float64)
    outs = []
    for _ in range(num_mips):
        win, valid = windows(prev, factor)
        prev = np.where(valid, win, 0.0).sum(axis=-1) / valid.sum(axis=-1)
        outs.append(prev)
    return outs


# ----------------------------------------------------------------------------
# mode pooling


def _keys(img):
    """Labels compare bitwise: floats are compared through their bit patterns."""
    if img.dtype.kind == "f":
        return img.view(np.dtype("u%d" % img.dtype.itemsize))
    return img


def _mode_2x2(keys, factor, sparse):
    win = windows(keys, factor)[0]
    # scan order: a=(0,0), b=+1 on the first axis, c=+1 on the second, d=both
    a, b, c, d = (win[..., i] for i in range(4))
    if not sparse:
        return np.where((a == b) | (a == c), a, np.where(b == c, b, d))
    zero = np.zeros_like(a)
    first_nonzero = np.where(a != 0, a, np.where(b != 0, b, np.where(c != 0, c, zero)))
    return np.where(
        (a != 0) & ((a == b) | (a == c)),
        a,
        np.where((b != 0) & (b == c), b, np.where(d != 0, d, first_nonzero)),
    )


def _mode_counting(keys, factor, sparse, clipped):
    """Most frequent value of each window, ties to the earliest first occurrence."""
    win, valid = windows(keys, factor)
    if not clipped:
        valid = np.ones_like(valid)
    # equal[..., t, j]: voxel j of the window is real and equals voxel t
    equal = (win[..., :, None] == win[..., None, :]) & valid[..., None, :]
    counts = equal.sum(axis=-1)
    candidate = valid & (win != 0) if sparse else valid
    counts = np.where(candidate, counts, 0)
    # argmax returns the first maximum: the earliest occurrence of the most
    # frequent value. Sparse and all zero: every count is 0, index 0 holds a 0.
    best = counts.argmax(axis=-1)
    return np.take_along_axis(win, best[..., None], axis=-1)[..., 0]


def downsample_segmentation(img, factor, sparse=False, num_mips=1):
    img = np.asarray(img)
    factor = pad_factor(factor, img.ndim)
    if all(f == 1 for f in factor):
        return [img.copy() for _ in range(num_mips)]
    fam = family_axes(factor)
    keys = _keys(img)
    outs = []
    for _ in range(num_mips):  # mode of modes
        if fam and len(fam) == 2:
            keys = _mode_2x2(keys, factor, sparse)
        elif fam:
            keys = _mode_counting(keys, factor, sparse, clipped=False)
        else:
            keys = _mode_counting(keys, factor, sparse, clipped=True)
        outs.append(np.ascontiguousarray(keys).view(img.dtype))
    return outs


# ----------------------------------------------------------------------------
# min / max pooling, striding


def _pool(img, factor, num_mips, reduce):
    img = np.asarray(img)
    factor = pad_factor(factor, img.ndim)
    outs = []
    prev = img
    for _ in range(num_mips):
        if all(f == 1 for f in factor):
            prev = prev.copy()
        else:
            # replicate padding repeats values already in the window, so the
            # reduction equals the one over the CLIPPED window
            prev = reduce(windows(prev, factor)[0], axis=-1)
        outs.append(prev)
    return outs


def downsample_with_max_pooling(img, factor, num_mips=1):
    """Max over the clipped window; NaN propagates (np.max does)."""
    return _pool(img, factor, num_mips, np.max)


def downsample_with_min_pooling(img, factor, num_mips=1):
    """Min over the clipped window; NaN propagates (np.min does)."""
    return _pool(img, factor, num_mips, np.min)


def downsample_with_striding(img, factor, num_mips=1):
    """out[i] = in[i * f**k] on every axis."""
    img = np.asarray(img)
    factor = pad_factor(factor, img.ndim)
    return [
        img[tuple(slice(None, None, f**k) for f in factor)].copy() for k in range(1, num_mips + 1)
    ]


OPS = {
    "averaging": downsample_with_averaging,
    "segmentation": downsample_segmentation,
    "min_pooling": downsample_with_min_pooling,
    "max_pooling": downsample_with_max_pooling,
    "striding": downsample_with_striding,
}


def run(op, img, factor, num_mips=1, sparse=False):
    """Uniform entry point: run(op, img, factor, num_mips, sparse)."""
    if op == "averaging":
        return downsample_with_averaging(img, factor, num_mips=num_mips, sparse=sparse)
    if op == "segmentation":
        return downsample_segmentation(img, factor, sparse=sparse, num_mips=num_mips)
    if sparse:
        raise ValueError("sparse is only defined for averaging and segmentation")
    return OPS[op](img, factor, num_mips=num_mips)


__all__ = [
    "ALL_DTYPES",
    "FLOAT_DTYPES",
    "INT_DTYPES",
    "downsample_segmentation",
    "downsample_with_averaging",
    "downsample_with_max_pooling",
    "downsample_with_min_pooling",
    "downsample_with_striding",
    "family_axes",
    "mip_shape",
    "pad_factor",
    "run",
    "windows",
]
