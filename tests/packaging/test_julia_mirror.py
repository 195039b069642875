"""examples-c/julia/TinyBrain.jl, mirrored call for call (Julia is not installable here).

1. Every `@ccall` in TinyBrain.jl is parsed (the loop over the five entry points
   expanded) and its argument and return types are checked against include/tinybrain.h,
   as are its tb_dtype table and TB_SPARSE.
2. `TinyBrainJl` below is the module's code line for line, calling ctypes functions
   declared from those same parsed Julia types, on numpy arrays laid out as Julia's
   (column-major `Array`s, views with their own strides); its results are compared with
   naive numpy references.
"""

import ctypes
import re

import numpy as np
import pytest
from mirror_common import (
    ROOT,
    average_2x2_pyramid,
    balanced,
    header_constants,
    header_functions,
    library,
    mode_2x2,
    pool_clipped,
    split_top_level,
)

JL = (ROOT / "examples-c" / "julia" / "TinyBrain.jl").read_text()

JULIA_TO_C = {"Cvoid": "void", "Int32": "int32_t", "UInt32": "uint32_t", "Csize_t": "size_t",
              "Cptrdiff_t": "ptrdiff_t", "Cstring": "char*"}
JULIA_TO_CTYPES = {"Int32": ctypes.c_int32, "UInt32": ctypes.c_uint32, "Csize_t": ctypes.c_size_t,
                   "Cptrdiff_t": ctypes.c_ssize_t, "Cstring": ctypes.c_char_p}


def c_type(jtype):
    """Julia FFI type -> normalized C type: Ptr{Ptr{Cvoid}} -> 'void**'."""
    m = re.fullmatch(r"Ptr\{(.*)\}", jtype)
    return c_type(m.group(1)) + "*" if m else JULIA_TO_C[jtype]


def ctypes_type(jtype):
    return ctypes.c_void_p if jtype.startswith("Ptr{") else JULIA_TO_CTYPES[jtype]


def op_table():
    """The (op, C name) pairs of the module's @eval loop."""
    return dict(re.findall(r"\(:(\w+), :(tb_\w+)\)", JL))


def julia_ccalls():
    """[(C name, [(argument expression, Julia type)], Julia return type)], one per call."""
    calls = []
    for m in re.finditer(r"@ccall\s+libtinybrain\.(\$?\w+)\(", JL):
        args, end = balanced(JL, m.end() - 1)
        ret = re.match(r"::([\w{}]+)", JL[end:]).group(1)
        parsed = []
        for arg in split_top_level(args):
            expr, _, jtype = arg.rpartition("::")
            parsed.append((expr.strip(), jtype.strip()))
        names = op_table().values() if m.group(1) == "$cname" else [m.group(1)]
        calls += [(name, parsed, ret) for name in names]
    return calls


SIGNATURES = {name: ([t for _, t in args], ret) for name, args, ret in julia_ccalls()}


def test_every_ccall_matches_the_header():
    header = header_functions()
    assert len(SIGNATURES) == 9, sorted(SIGNATURES)
    for name, (args, ret) in SIGNATURES.items():
        assert name in header, f"{name} is not in tinybrain.h"
        want_ret, want_args = header[name]
        assert [c_type(t) for t in args] == want_args, name
        assert c_type(ret) == want_ret, name


def test_the_op_table_names_all_five_methods():
    assert op_table() == {
        "averaging": "tb_downsample_with_averaging",
        "segmentation": "tb_downsample_segmentation",
        "min_pooling": "tb_downsample_with_min_pooling",
        "max_pooling": "tb_downsample_with_max_pooling",
        "striding": "tb_downsample_with_striding",
    }


def julia_dtypes():
    block = re.search(r"const DTYPES = Dict\{DataType,Int32\}\((.*?)\)\n", JL, re.S).group(1)
    return {name: int(code) for name, code in re.findall(r"(\w+) => (\d+)", block)}


def test_dtype_codes_and_flags_match_the_header():
    consts = header_constants()
    for jl_name, code in julia_dtypes().items():
        assert consts["TB_" + jl_name.upper()] == code, jl_name
    assert len(julia_dtypes()) == 10
    assert int(re.search(r"const TB_SPARSE = UInt32\((\d+)\)", JL).group(1)) == consts["TB_SPARSE"]


# ---------------------------------------------------------------------------------
# The module, line for line.

JL_TYPE_OF_NUMPY = {np.dtype(np.uint8): "UInt8", np.dtype(np.uint16): "UInt16",
                    np.dtype(np.uint32): "UInt32", np.dtype(np.uint64): "UInt64",
                    np.dtype(np.int8): "Int8", np.dtype(np.int16): "Int16",
                    np.dtype(np.int32): "Int32", np.dtype(np.int64): "Int64",
                    np.dtype(np.float32): "Float32", np.dtype(np.float64): "Float64"}


class TinyBrainError(Exception):
    def __init__(self, status, name, message):
        super().__init__(f"{name} ({status}): {message}")
        self.status, self.name, self.message = status, name, message


class TinyBrainJl:
    def __init__(self):
        lib = library()
        self.c = {}
        for name, (args, ret) in SIGNATURES.items():
            fn = getattr(lib, name)
            fn.argtypes = [ctypes_type(t) for t in args]
            fn.restype = ctypes_type(ret)
            self.c[name] = fn
        self.dtypes = julia_dtypes()
        self.ops = op_table()

    def check(self, status):  # check(status::Int32)
        if status == 0:
            return
        message = self.c["tb_last_error_message"]().decode()
        name = self.c["tb_status_name"](status).decode()
        raise TinyBrainError(status, name, message)

    def version(self):
        return self.c["tb_version"]().decode()

    def padfactor(self, factor, n):
        f = [int(x) for x in factor]
        assert all(x >= 0 for x in f)  # Csize_t[factor...] throws InexactError otherwise
        if len(f) > n and any(x != 1 for x in f[n:]):
            raise ValueError(f"factor {tuple(factor)} has more entries than the array's {n} axes")
        return f[: min(n, len(f))] + [1] * (n - min(n, len(f)))

    def mip_shape(self, shape, factor, mip):
        n = len(shape)
        out = (ctypes.c_size_t * n)()
        self.check(self.c["tb_mip_shape"](n, sizes(shape), sizes(self.padfactor(factor, n)), mip, out))
        return tuple(int(x) for x in out)

    def downsample(self, op, img, factor, num_mips, sparse):
        jl_type = JL_TYPE_OF_NUMPY.get(img.dtype)
        if jl_type not in self.dtypes:
            raise ValueError(f"tinybrain does not support element type {img.dtype}")
        n = img.ndim
        f = self.padfactor(factor, n)
        mips = [np.empty(self.mip_shape(img.shape, f, k), img.dtype, order="F") for k in range(1, num_mips + 1)]
        outputs = (ctypes.c_void_p * max(num_mips, 1))(*[m.ctypes.data for m in mips])
        strides = [s // img.itemsize for s in img.strides]  # strides(img): in elements
        self.check(self.c[self.ops[op]](img.ctypes.data, self.dtypes[jl_type], n, sizes(img.shape),
                                        (ctypes.c_ssize_t * n)(*strides), sizes(f), num_mips,
                                        1 if sparse else 0, outputs, None))
        return mips

    def downsample_with_averaging(self, img, factor, num_mips=1, sparse=False):
        return self.downsample("averaging", img, factor, num_mips, sparse)

    def downsample_segmentation(self, img, factor, num_mips=1, sparse=False):
        return self.downsample("segmentation", img, factor, num_mips, sparse)

    def downsample_with_min_pooling(self, img, factor, num_mips=1):
        return self.downsample("min_pooling", img, factor, num_mips, False)

    def downsample_with_max_pooling(self, img, factor, num_mips=1):
        return self.downsample("max_pooling", img, factor, num_mips, False)

    def downsample_with_striding(self, img, factor, num_mips=1):
        return self.downsample("striding", img, factor, num_mips, False)


def sizes(values):
    return (ctypes.c_size_t * len(values))(*values)


@pytest.fixture(scope="module")
def tb():
    return TinyBrainJl()


RNG = np.random.default_rng(5)


def julia_array(shape, dtype, high):
    """A column-major array, like Julia's rand(T, dims...)."""
    return np.asfortranarray(RNG.integers(0, high, shape).astype(dtype))


def test_version(tb):
    assert tb.version() == header_constants()["TINYBRAIN_VERSION"]


def test_padfactor_and_mip_shape(tb):
    assert tb.padfactor((2, 2), 3) == [2, 2, 1]
    assert tb.padfactor((2, 2, 1, 1), 3) == [2, 2, 1]
    with pytest.raises(ValueError):
        tb.padfactor((2, 2, 1, 2), 3)
    assert tb.mip_shape((9, 7, 3), (2, 2), 1) == (5, 4, 3)
    assert tb.mip_shape((9, 7, 3), (2, 2), 2) == (3, 2, 3)


def test_averaging_uint8(tb):
    img = julia_array((9, 7, 3), np.uint8, 256)
    mips = tb.downsample_with_averaging(img, (2, 2), num_mips=2)
    for got, want in zip(mips, average_2x2_pyramid(img, 2)):
        assert got.flags.f_contiguous and got.dtype == np.uint8
        np.testing.assert_array_equal(got, want)


def test_views_are_passed_with_their_strides(tb):
    """view(A, n:-1:1, :, :) and PermutedDimsArray(A, (2, 1, 3)) give what their copies give."""
    base = julia_array((10, 8, 2), np.int16, 3000)
    for view in (base[::-1], base.transpose(1, 0, 2), base[1::2, :, ::-1]):
        assert not view.flags.f_contiguous
        got = tb.downsample_with_averaging(view, (2, 2), num_mips=2)
        want = tb.downsample_with_averaging(np.asfortranarray(view), (2, 2), num_mips=2)
        for g, w, ref in zip(got, want, average_2x2_pyramid(view, 2)):
            np.testing.assert_array_equal(g, w)
            np.testing.assert_array_equal(g, ref)


def test_segmentation_uint64(tb):
    labels = julia_array((11, 9, 2), np.uint64, 4) + np.uint64(2**60)
    mips = tb.downsample_segmentation(labels, (2, 2, 1), num_mips=2)
    np.testing.assert_array_equal(mips[0], mode_2x2(labels))
    np.testing.assert_array_equal(mips[1], mode_2x2(mode_2x2(labels)))


def test_min_max_striding_float32(tb):
    x = np.asfortranarray(RNG.random((7, 5, 3)).astype(np.float32))
    np.testing.assert_array_equal(tb.downsample_with_min_pooling(x, (2, 3))[0], pool_clipped(x, (2, 3), np.minimum))
    np.testing.assert_array_equal(tb.downsample_with_max_pooling(x, (2, 3))[0], pool_clipped(x, (2, 3), np.maximum))
    np.testing.assert_array_equal(tb.downsample_with_striding(x, (2, 3), num_mips=2)[1], x[::4, ::9])


def test_errors(tb):
    img = julia_array((8, 8), np.uint8, 256)
    with pytest.raises(TinyBrainError) as e:
        tb.downsample_with_averaging(img, (2, 0))
    assert e.value.name == "TB_ERR_FACTOR" and e.value.status == 4 and e.value.message
    with pytest.raises(TinyBrainError) as e:  # downsample(:min_pooling, img, (2, 2), 1, true)
        tb.downsample("min_pooling", img, (2, 2), 1, True)
    assert e.value.name == "TB_ERR_UNSUPPORTED"
    with pytest.raises(ValueError, match="element type"):
        tb.downsample_with_averaging(img.astype(bool), (2, 2))
