"""Errors through the raw C ABI (ctypes): each bad input of SEMANTICS.md "Errors"
returns its status code, leaves a non-empty message in tb_last_error_message,
and writes nothing (outputs are filled with a sentinel first and checked after).

Calls whose shapes or strides are absurd (overflow) run in a child process, so
that a library reading memory it should have refused crashes that child and
fails one test instead of killing the whole run.
"""

import ctypes
import json
import subprocess
import sys
import threading

import numpy as np
import pytest

import subject
import tinybrain_ctypes as tb

pytestmark = pytest.mark.usefixtures("lib")

OPS = list(tb.OPERATIONS)
SPARSE_OPS = ["averaging", "segmentation"]
SENTINEL = 0xA5A5

size_t = ctypes.c_size_t
ptrdiff_t = ctypes.c_ssize_t
SIZE_MAX = 2**64 - 1
PTRDIFF_MAX = 2**63 - 1


class Call:
    """A valid call of one operation (6x4 uint16, factor 2x2, 2 mips) whose
    pieces a test replaces with bad ones. Keeps every buffer alive and checks
    afterwards that nothing was written."""

    def __init__(self, op, packed=False):
        self.op, self.packed = op, packed
        self.input = (np.arange(24, dtype=np.uint16).reshape(6, 4, order="F") + 1) * 7
        self.input_before = self.input.copy()
        self.dtype = tb.DTYPE_CODES[np.dtype(np.uint16)]
        self.shape = [6, 4]
        self.ndim = None  # default: len(shape)
        self.strides = None  # NULL: Fortran contiguous
        self.factor = [2, 2]
        self.num_mips = 2
        self.flags = 0
        self.outputs = [np.full(s, SENTINEL, dtype=np.uint16, order="F") for s in ((3, 2), (2, 1))]
        self.packed_output = np.full(6 + 2 + 8, SENTINEL, dtype=np.uint16)  # + a guard tail
        self.output_ptrs = "default"  # or a list of ints / None, or None for a NULL array
        self.output_strides = None  # None, or a list of (None | list of strides)
        self.input_ptr = "default"
        self.keep = []

    def _array(self, ctype, values):
        if values is None:
            return None
        arr = (ctype * max(len(values), 1))(*values)
        self.keep.append(arr)
        return arr

    def __call__(self):
        lib = tb.load_library()
        name = tb.OPERATIONS[self.op] + ("_packed" if self.packed else "")
        ndim = len(self.shape) if self.ndim is None else self.ndim
        args = [
            self.input.ctypes.data if self.input_ptr == "default" else self.input_ptr,
            self.dtype,
            ndim,
            self._array(size_t, self.shape),
            self._array(ptrdiff_t, self.strides),
            self._array(size_t, self.factor),
            self.num_mips,
            self.flags,
        ]
        if self.packed:
            args.append(self.packed_output.ctypes.data if self.output_ptrs == "default" else None)
        else:
            ptrs = (
                [o.ctypes.data for o in self.outputs]
                if self.output_ptrs == "default"
                else self.output_ptrs
            )
            args.append(None if ptrs is None else self._array(ctypes.c_void_p, ptrs))
            if self.output_strides is None:
                args.append(None)
            else:
                entries = [
                    None
                    if s is None
                    else ctypes.cast(self._array(ptrdiff_t, s), ctypes.POINTER(ptrdiff_t))
                    for s in self.output_strides
                ]
                args.append(self._array(ctypes.POINTER(ptrdiff_t), entries))
        status = getattr(lib, name)(*args)
        message = tb.last_error_message()
        return status, message

    def untouched(self):
        return (
            all((o == SENTINEL).all() for o in self.outputs)
            and (self.packed_output == SENTINEL).all()
            and (self.input == self.input_before).all()
        )


def expect_error(call, statuses):
    """Run a call that must fail with one of `statuses` and write nothing."""
    status, message = call()
    assert status in statuses, (
        f"expected {[tb.status_name(s) for s in statuses]}, got {status} "
        f"({tb.status_name(status)}): {message!r}"
    )
    assert message.strip(), "tb_last_error_message is empty after a failure"
    assert call.untouched(), "a failed call wrote to its outputs (or input)"
    return message


VARIANTS = [(op, packed) for op in OPS for packed in (False, True)]
VARIANT_IDS = [f"{op}{'-packed' if p else ''}" for op, p in VARIANTS]


def variants(fn):
    return pytest.mark.parametrize("op, packed", VARIANTS, ids=VARIANT_IDS)(fn)


# ---------------------------------------------------------------------------
# the valid baseline


@variants
def test_baseline_call_is_valid(op, packed):
    """The unmodified call succeeds and writes (so 'untouched' means something)."""
    call = Call(op, packed)
    status, message = call()
    assert status == tb.TB_OK, message
    assert not call.untouched()


@variants
def test_num_mips_zero_writes_nothing(op, packed):
    call = Call(op, packed)
    call.num_mips = 0
    status, message = call()
    assert status == tb.TB_OK, message
    assert call.untouched()


# ---------------------------------------------------------------------------
# null pointers


@variants
@pytest.mark.parametrize("which", ["input", "shape", "factor", "outputs"])
def test_null_pointer(op, packed, which):
    call = Call(op, packed)
    if which == "input":
        call.input_ptr = None
    elif which == "shape":
        call.shape = None
        call.ndim = 2
    elif which == "factor":
        call.factor = None
    else:
        call.output_ptrs = None
    expect_error(call, {tb.TB_ERR_NULL_POINTER})


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("index", [0, 1])
def test_null_output_entry(op, index):
    call = Call(op)
    call.output_ptrs = [o.ctypes.data for o in call.outputs]
    call.output_ptrs[index] = None
    expect_error(call, {tb.TB_ERR_NULL_POINTER})


# ---------------------------------------------------------------------------
# dtype, ndim, shape, factor


@variants
@pytest.mark.parametrize("code", [0, 11, -1, 1000, 2**31 - 1])
def test_unknown_dtype(op, packed, code):
    call = Call(op, packed)
    call.dtype = code
    expect_error(call, {tb.TB_ERR_DTYPE})


@variants
@pytest.mark.parametrize("ndim", [0, 9, 100])
def test_bad_ndim(op, packed, ndim):
    call = Call(op, packed)
    call.shape = [1] * max(ndim, 1)
    call.factor = [1] * max(ndim, 1)
    call.ndim = ndim
    expect_error(call, {tb.TB_ERR_SHAPE})


@variants
@pytest.mark.parametrize("shape", [[0, 4], [6, 0], [0, 0]])
def test_zero_size_axis(op, packed, shape):
    call = Call(op, packed)
    call.shape = shape
    expect_error(call, {tb.TB_ERR_SHAPE})


@variants
@pytest.mark.parametrize("factor", [[0, 2], [2, 0], [0, 0]])
def test_zero_factor(op, packed, factor):
    call = Call(op, packed)
    call.factor = factor
    expect_error(call, {tb.TB_ERR_FACTOR})


# ---------------------------------------------------------------------------
# flags


@pytest.mark.parametrize("op", ["min_pooling", "max_pooling", "striding"])
@pytest.mark.parametrize("packed", [False, True])
def test_sparse_where_unsupported(op, packed):
    call = Call(op, packed)
    call.flags = tb.TB_SPARSE
    expect_error(call, {tb.TB_ERR_UNSUPPORTED})


@variants
@pytest.mark.parametrize("flags", [2, 3, 1 << 31, 0xFFFFFFFF])
def test_unknown_flag_bits(op, packed, flags):
    call = Call(op, packed)
    call.flags = flags
    expect_error(call, {tb.TB_ERR_UNSUPPORTED})


# ---------------------------------------------------------------------------
# outputs: overlap with the input, with each other, with themselves


@pytest.mark.parametrize("op", OPS)
def test_output_is_the_input(op):
    call = Call(op)
    call.output_ptrs = [call.input.ctypes.data, call.outputs[1].ctypes.data]
    expect_error(call, {tb.TB_ERR_OVERLAP})


@pytest.mark.parametrize("op", OPS)
def test_output_overlaps_input_tail(op):
    """mip 1 (6 elements) starts 4 elements before the input's end."""
    call = Call(op)
    call.output_ptrs = [call.input.ctypes.data + 20 * 2, call.outputs[1].ctypes.data]
    expect_error(call, {tb.TB_ERR_OVERLAP})


@pytest.mark.parametrize("op", OPS)
def test_packed_output_is_the_input(op):
    call = Call(op, packed=True)
    call.packed_output = call.input  # the output pointer now is the input's
    call.input_before = call.input.copy()
    status, message = call()
    assert status == tb.TB_ERR_OVERLAP, (status, message)
    assert message.strip()
    assert (call.input == call.input_before).all()


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("offset", [0, 1, 5])
def test_outputs_overlap_each_other(op, offset):
    """mip 2 (2 elements) placed inside mip 1's 6 elements."""
    call = Call(op)
    call.output_ptrs = [call.outputs[0].ctypes.data, call.outputs[0].ctypes.data + 2 * offset]
    expect_error(call, {tb.TB_ERR_OVERLAP})


@pytest.mark.parametrize("op", OPS)
def test_outputs_interleaved_by_strides(op):
    """mip 1 written every other element, mip 2 in between: they overlap in
    extent but not in elements. SEMANTICS forbids outputs that overlap each
    other; either refusing it (overlap) or computing it correctly is fine, but
    nothing else."""
    call = Call(op)
    buf = np.full(16, SENTINEL, dtype=np.uint16)
    call.keep.append(buf)
    call.output_ptrs = [buf.ctypes.data, buf.ctypes.data + 2]
    call.output_strides = [[2, 6], [2, 4]]
    status, message = call()
    if status == tb.TB_OK:
        mips = tb.downsample_packed(op, call.input, (2, 2), 2)[1]
        assert (buf[0:12:2].reshape(3, 2, order="F") == mips[0]).all()
        assert (buf[1:5:2].reshape(2, 1, order="F") == mips[1]).all()
    else:
        assert status == tb.TB_ERR_OVERLAP, message
        assert message.strip()
        assert (buf == SENTINEL).all()


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("strides", [[0, 3], [1, 0], [1, 1], [0, 0]])
def test_output_overlaps_itself(op, strides):
    """Strides that map two elements of mip 1 (3x2) to one address."""
    call = Call(op)
    call.output_strides = [strides, None]
    expect_error(call, {tb.TB_ERR_STRIDES, tb.TB_ERR_OVERLAP})


@pytest.mark.parametrize("op", OPS)
def test_output_strides_may_be_mixed_null(op):
    """output_strides entries may be NULL (Fortran) next to explicit strides."""
    call = Call(op)
    big = np.full((6, 2), SENTINEL, dtype=np.uint16)
    call.keep.append(big)
    call.output_ptrs = [call.outputs[0].ctypes.data, big.ctypes.data + 2]
    call.output_strides = [None, [2, 12]]  # big[1::2, :1] in C order: element (x, 0)
    status, message = call()
    assert status == tb.TB_OK, message
    expected = tb.downsample_packed(op, call.input, (2, 2), 2)[1]
    assert (call.outputs[0] == expected[0]).all()
    assert (big.ravel()[1:4:2] == expected[1].ravel()).all()
    untouched = np.ones(12, dtype=bool)
    untouched[[1, 3]] = False
    assert (big.ravel()[untouched] == SENTINEL).all()


# ---------------------------------------------------------------------------
# absurd sizes and strides, each in a child process

RISKY = {
    # element count overflows size_t
    "count_overflow": dict(shape=[2**33, 2**33], factor=[2, 2], expect=[tb.TB_ERR_SHAPE]),
    "count_overflow_3d": dict(
        shape=[2**22, 2**22, 2**22], factor=[2, 2, 1], expect=[tb.TB_ERR_SHAPE]
    ),
    # element count fits, byte size (x8) does not
    "bytes_overflow": dict(shape=[2**31, 2**31], factor=[2, 2], dtype=4, expect=[tb.TB_ERR_SHAPE]),
    "size_max_axis": dict(shape=[SIZE_MAX, 1], factor=[2, 1], expect=[tb.TB_ERR_SHAPE]),
    # strides whose address arithmetic overflows
    "stride_overflow": dict(strides=[1, PTRDIFF_MAX // 2], expect=[tb.TB_ERR_STRIDES]),
    "stride_overflow_negative": dict(strides=[-(2**62), 6], expect=[tb.TB_ERR_STRIDES]),
    "output_stride_overflow": dict(output_strides=[[1, 2**62], None], expect=[tb.TB_ERR_STRIDES]),
    "mip_shape_huge_factor": dict(factor=[2**63, 2**63], num_mips=3, expect=[tb.TB_OK]),
}


def run_risky(name, op, packed):
    """Executed in the child: one risky call, result as JSON on stdout."""
    case = dict(RISKY[name])
    expect = case.pop("expect")
    call = Call(op, packed)
    if "dtype" in case:
        call.dtype = case.pop("dtype")
        call.input = call.input.astype(np.uint64)
        call.input_before = call.input.copy()
    if packed and "output_strides" in case:
        return None
    if "factor" in case and case["factor"][0] >= 2**32:
        # a factor so large that mip 1 is 1x1 (and f**k overflows): valid call
        call.outputs = [np.full((1, 1), SENTINEL, dtype=np.uint16) for _ in range(3)]
        call.packed_output = np.full(3 + 8, SENTINEL, dtype=np.uint16)
    for key, value in case.items():
        setattr(call, key, value)
    status, message = call()
    return dict(status=status, message=message, untouched=bool(call.untouched()), expect=expect)


@pytest.mark.parametrize("name", sorted(RISKY))
def test_absurd_sizes_and_strides(name):
    code = (
        "import json, sys; sys.path[:0] = %r; import test_errors as t\n"
        "out = {}\n"
        "for op in t.OPS:\n"
        "    for packed in (False, True):\n"
        "        print('running', op, packed, file=sys.stderr, flush=True)\n"
        "        out[op + ('-packed' if packed else '')] = t.run_risky(%r, op, packed)\n"
        "print(json.dumps(out))\n"
    ) % (sys.path[:4], name)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (
        f"child crashed (exit {proc.returncode}) on {name}; last call: "
        f"{proc.stderr.strip().splitlines()[-3:]}"
    )
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    bad = {}
    for variant, r in results.items():
        if r is None:
            continue
        if r["status"] not in r["expect"]:
            bad[variant] = (tb.status_name(r["status"]), r["message"])
        elif r["status"] != tb.TB_OK and not (r["message"].strip() and r["untouched"]):
            bad[variant] = ("message empty or output written", r)
    assert not bad, f"{name}: {bad}"


# ---------------------------------------------------------------------------
# messages, names, helpers


def test_status_names():
    names = {
        0: "TB_OK",
        1: "TB_ERR_NULL_POINTER",
        2: "TB_ERR_DTYPE",
        3: "TB_ERR_SHAPE",
        4: "TB_ERR_FACTOR",
        5: "TB_ERR_STRIDES",
        6: "TB_ERR_OUTPUT",
        7: "TB_ERR_OVERLAP",
        8: "TB_ERR_UNSUPPORTED",
        9: "TB_ERR_OUT_OF_MEMORY",
        10: "TB_ERR_INTERNAL",
    }
    for code, name in names.items():
        assert tb.status_name(code) == name
    for code in (-1, 11, 2**31 - 1):
        assert tb.status_name(code)  # a static string, never NULL


def test_error_message_is_per_thread():
    call = Call("averaging")
    call.factor = [0, 2]
    main_message = expect_error(call, {tb.TB_ERR_FACTOR})
    seen = {}

    def worker():
        seen["before"] = tb.last_error_message()
        other = Call("segmentation")
        other.dtype = 99
        seen["status"], seen["message"] = other()

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["before"] == "", "a new thread sees another thread's error message"
    assert seen["status"] == tb.TB_ERR_DTYPE and seen["message"]
    assert tb.last_error_message() == main_message, "another thread's failure replaced this one's"


def test_helpers_errors(lib):
    shape = (size_t * 2)(6, 4)
    factor = (size_t * 2)(2, 2)
    zero = (size_t * 2)(0, 2)
    out = (size_t * 2)()
    n = size_t()
    assert lib.tb_mip_shape(2, shape, zero, 1, out) == tb.TB_ERR_FACTOR
    assert lib.tb_mip_shape(0, shape, factor, 1, out) == tb.TB_ERR_SHAPE
    assert lib.tb_mip_shape(9, shape, factor, 1, out) == tb.TB_ERR_SHAPE
    assert lib.tb_mip_shape(2, None, factor, 1, out) == tb.TB_ERR_NULL_POINTER
    assert lib.tb_mip_shape(2, shape, None, 1, out) == tb.TB_ERR_NULL_POINTER
    assert lib.tb_mip_shape(2, shape, factor, 1, None) == tb.TB_ERR_NULL_POINTER
    assert lib.tb_mip_len(2, shape, factor, 1, None) == tb.TB_ERR_NULL_POINTER
    assert lib.tb_pyramid_len(2, shape, zero, 1, ctypes.byref(n)) == tb.TB_ERR_FACTOR
    assert tb.last_error_message()
    huge = (size_t * 2)(2**40, 2**40)
    assert lib.tb_mip_len(2, huge, factor, 0, ctypes.byref(n)) == tb.TB_ERR_SHAPE
    assert lib.tb_pyramid_len(2, huge, factor, 3, ctypes.byref(n)) == tb.TB_ERR_SHAPE


def test_dtype_size(lib):
    sizes = {1: 1, 2: 2, 3: 4, 4: 8, 5: 1, 6: 2, 7: 4, 8: 8, 9: 4, 10: 8}
    for code, size in sizes.items():
        assert lib.tb_dtype_size(code) == size
    for code in (0, 11, -1):
        assert lib.tb_dtype_size(code) == 0


# ---------------------------------------------------------------------------
# the Python wrapper's own checks


def test_wrapper_raises_tinybrain_error():
    img = np.zeros((6, 4), dtype=np.float32)
    with pytest.raises(tb.TinybrainError) as info:
        tb.downsample_with_averaging(img, (2, 0))
    assert info.value.status == tb.TB_ERR_FACTOR
    assert info.value.name == "TB_ERR_FACTOR" and info.value.message
    with pytest.raises(tb.TinybrainError) as info:
        tb.downsample_with_max_pooling(img[:0], (2, 2))
    assert info.value.status == tb.TB_ERR_SHAPE
    with pytest.raises(tb.TinybrainError) as info:
        tb.downsample_with_striding(np.zeros((1,) * 9, dtype=np.uint8), (1,) * 9)
    assert info.value.status == tb.TB_ERR_SHAPE
    with pytest.raises(tb.TinybrainError) as info:
        tb.downsample_segmentation(np.zeros((4, 4), dtype=bool), (2, 2))
    assert info.value.status == tb.TB_ERR_DTYPE


def test_wrapper_rejects_wrong_outputs():
    img = np.arange(24, dtype=np.int16).reshape(6, 4)
    good = [np.zeros((3, 2), np.int16), np.zeros((2, 1), np.int16)]
    for out in (
        [np.zeros((3, 2), np.int32), good[1]],  # dtype
        [np.zeros((2, 3), np.int16), good[1]],  # shape
        [good[0]],  # count
    ):
        with pytest.raises((tb.TinybrainError, ValueError)) as info:
            tb.downsample_with_averaging(img, (2, 2), num_mips=2, out=out)
        if isinstance(info.value, tb.TinybrainError):
            assert info.value.status == tb.TB_ERR_OUTPUT


def test_wrapper_output_overlapping_input():
    img = np.arange(1, 65, dtype=np.float32).reshape(8, 8)
    before = img.copy()
    with pytest.raises(tb.TinybrainError) as info:
        tb.downsample_with_averaging(img, (2, 2), out=[img[::2, ::2]])
    assert info.value.status == tb.TB_ERR_OVERLAP
    assert (img == before).all()


def test_wrapper_overlap_with_negative_strides():
    """The input's memory runs below its data pointer when strides are negative:
    an output there overlaps it."""
    base = np.arange(64, dtype=np.float32).reshape(8, 8)
    img = base[::-1, ::-1]  # data pointer at base's last element
    before = base.copy()
    for out in (base[:4, :4], img[:4, :4], base[4:, 4:][::-1]):
        with pytest.raises(tb.TinybrainError) as info:
            tb.downsample_with_averaging(img, (2, 2), out=[out])
        assert info.value.status == tb.TB_ERR_OVERLAP
        assert (base == before).all()


@pytest.mark.parametrize("op", OPS)
def test_input_and_output_interleaved(op):
    """Input on the even columns of a buffer, output on the odd ones: extents
    overlap, elements do not. Refusing (overlap) or computing it right are both
    fine; nothing else is."""
    buf = np.zeros((8, 16), dtype=np.float32)
    buf[:, ::2] = np.arange(64).reshape(8, 8)
    img, out = buf[:, ::2], buf[:4, 1::2][:, :4]
    expected = tb.downsample_packed(op, img.copy(), (2, 2), 1)[1][0]
    before = buf.copy()
    try:
        subject.run(op, img, (2, 2), out=[out])
    except tb.TinybrainError as exc:
        assert exc.status == tb.TB_ERR_OVERLAP, exc
        assert (buf == before).all()
    else:
        assert (out == expected).all()
        assert (img == before[:, ::2]).all()
