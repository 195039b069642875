"""examples-c/matlab/tinybrain_loadlibrary.m, mirrored (MATLAB is not available here).

1. Every calllib('tinybrain', NAME, ...) in the .m file names a function of tinybrain.h
   and passes as many arguments as it declares; the downsampling call is a `_packed` one
   (calllib cannot pass the array of output pointers the other entry points take).
2. `loadlibrary_mirror` makes the same calls in the same order through ctypes, with the
   types MATLAB passes (uint64 for size_t on 64-bit Linux, int32 dtype, uint32 flags,
   [] as NULL, libpointer buffers), and its mips are checked against numpy references.
"""

import ctypes
import re

import numpy as np
from mirror_common import ROOT, average_2x2_pyramid, balanced, header_functions, library, split_top_level

M_FILE = (ROOT / "examples-c" / "matlab" / "tinybrain_loadlibrary.m").read_text()


def calllib_calls():
    """[(function name, [argument expressions after the name])] in source order."""
    calls = []
    for m in re.finditer(r"calllib\(", M_FILE):
        inner, _ = balanced(M_FILE, m.end() - 1)
        args = split_top_level(re.sub(r"\.\.\.\s*\n", " ", inner))
        assert args[0] == "'tinybrain'", args
        calls.append((args[1].strip("'"), args[2:]))
    return calls


def test_every_calllib_matches_the_header():
    header = header_functions()
    names = [name for name, _ in calllib_calls()]
    assert names == ["tb_pyramid_len", "tb_downsample_with_averaging_packed", "tb_mip_shape",
                     "tb_last_error_message", "tb_status_name"], names
    for name, args in calllib_calls():
        assert len(args) == len(header[name][1]), name
    # The output of the packed call is one plain buffer, not an array of pointers.
    assert header["tb_downsample_with_averaging_packed"][1][-1] == "void*"


def loadlibrary_mirror(img, factor, num_mips):
    """tinybrain_loadlibrary(img, factor, num_mips, prefix), step for step."""
    lib = library()
    u64 = ctypes.c_uint64  # size_t on 64-bit Linux, which MATLAB maps to uint64
    assert ctypes.sizeof(u64) == ctypes.sizeof(ctypes.c_size_t)
    for name in ("tb_pyramid_len", "tb_mip_shape"):
        getattr(lib, name).argtypes = [u64, ctypes.c_void_p, ctypes.c_void_p, u64, ctypes.c_void_p]
        getattr(lib, name).restype = ctypes.c_int32
    packed = lib.tb_downsample_with_averaging_packed
    packed.argtypes = [ctypes.c_void_p, ctypes.c_int32, u64, ctypes.c_void_p, ctypes.c_void_p,
                       ctypes.c_void_p, u64, ctypes.c_uint32, ctypes.c_void_p]
    packed.restype = ctypes.c_int32

    TB_UINT8 = 1
    shape = np.array(img.shape, dtype=np.uint64)                   # uint64(size(img))
    ndim = len(shape)
    factor = np.array(list(factor) + [1] * (ndim - len(factor)), dtype=np.uint64)

    length = u64(0)                                                # libpointer('uint64Ptr', 0)
    assert lib.tb_pyramid_len(ndim, shape.ctypes.data, factor.ctypes.data, num_mips, ctypes.byref(length)) == 0

    out = np.zeros(length.value, dtype=np.uint8)                   # libpointer('voidPtr', zeros)
    img_f = np.asfortranarray(img)                                 # MATLAB arrays: column-major
    assert packed(img_f.ctypes.data, TB_UINT8, ndim, shape.ctypes.data, None, factor.ctypes.data,
                  num_mips, 0, out.ctypes.data) == 0

    mips, offset = [], 0
    for k in range(1, num_mips + 1):
        mip_shape = np.zeros(ndim, dtype=np.uint64)
        assert lib.tb_mip_shape(ndim, shape.ctypes.data, factor.ctypes.data, k, mip_shape.ctypes.data) == 0
        dims = [int(d) for d in mip_shape]
        n = int(np.prod(dims))
        mips.append(out[offset : offset + n].reshape(dims, order="F"))  # reshape(buffer(...), dims)
        offset += n
    assert offset == length.value
    return mips


def test_the_call_sequence_gives_the_pyramid():
    img = np.random.default_rng(3).integers(0, 256, (37, 29, 5)).astype(np.uint8)
    mips = loadlibrary_mirror(img, [2, 2], 3)
    assert [m.shape for m in mips] == [(19, 15, 5), (10, 8, 5), (5, 4, 5)]
    for got, want in zip(mips, average_2x2_pyramid(img, 3)):
        np.testing.assert_array_equal(got, want)
