"""tinybrain over ctypes: the C library called from Python with numpy arrays.

    import numpy as np
    import tinybrain_ctypes as tb

    img = np.random.randint(0, 255, (512, 512, 64), dtype=np.uint8)
    mips = tb.downsample_with_averaging(img, (2, 2, 1), num_mips=4)
    labels = tb.downsample_segmentation(seg, (2, 2, 2), sparse=True, num_mips=2)

The calls mirror the Python package tinybrain: each returns a list of numpy
arrays, mip 1 first, with the input's dtype and shape ceil(s / f**k). Axis 0 is
x, as in tinybrain. Any memory layout is passed as it is (C order, Fortran
order, transposes, slices, negative or zero strides): the library gets the
array's own shape and element strides, nothing is copied. Outputs are new
Fortran-ordered arrays, or the caller's own arrays given with `out=`.

The shared library is $TINYBRAIN_LIB if set, else
<repo>/target/release/libtinybrain.so. It is loaded on first use.
"""

import ctypes
import operator
import os
import pathlib

import numpy as np

__all__ = [
    "TinybrainError",
    "chunk_alignment",
    "downsample_packed",
    "downsample_segmentation",
    "downsample_with_averaging",
    "downsample_with_max_pooling",
    "downsample_with_min_pooling",
    "downsample_with_striding",
    "dtype_code",
    "get_num_threads",
    "last_error_message",
    "library_path",
    "load_library",
    "mip_len",
    "mip_shape",
    "pyramid_len",
    "set_num_threads",
    "status_name",
    "version",
]

# tb_dtype
DTYPE_CODES = {
    np.dtype(np.uint8): 1,
    np.dtype(np.uint16): 2,
    np.dtype(np.uint32): 3,
    np.dtype(np.uint64): 4,
    np.dtype(np.int8): 5,
    np.dtype(np.int16): 6,
    np.dtype(np.int32): 7,
    np.dtype(np.int64): 8,
    np.dtype(np.float32): 9,
    np.dtype(np.float64): 10,
}

# tb_status
TB_OK = 0
TB_ERR_NULL_POINTER = 1
TB_ERR_DTYPE = 2
TB_ERR_SHAPE = 3
TB_ERR_FACTOR = 4
TB_ERR_STRIDES = 5
TB_ERR_OUTPUT = 6
TB_ERR_OVERLAP = 7
TB_ERR_UNSUPPORTED = 8
TB_ERR_OUT_OF_MEMORY = 9
TB_ERR_INTERNAL = 10

TB_SPARSE = 1
TB_MAX_NDIM = 8

OPERATIONS = {
    "averaging": "tb_downsample_with_averaging",
    "segmentation": "tb_downsample_segmentation",
    "min_pooling": "tb_downsample_with_min_pooling",
    "max_pooling": "tb_downsample_with_max_pooling",
    "striding": "tb_downsample_with_striding",
}

_size_t = ctypes.c_size_t
_ptrdiff_t = ctypes.c_ssize_t
_size_p = ctypes.POINTER(_size_t)
_ptrdiff_p = ctypes.POINTER(_ptrdiff_t)


class TinybrainError(Exception):
    """A call failed: status code, its name (e.g. 'TB_ERR_FACTOR') and the message."""

    def __init__(self, status, name, message):
        super().__init__(f"{name} ({status}): {message}")
        self.status = status
        self.name = name
        self.message = message


# ----------------------------------------------------------------------------
# loading


def library_path():
    """$TINYBRAIN_LIB, else <repo>/target/release/libtinybrain.so."""
    env = os.environ.get("TINYBRAIN_LIB")
    if env:
        return pathlib.Path(env)
    repo = pathlib.Path(__file__).resolve().parents[2]
    return repo / "target" / "release" / "libtinybrain.so"


_LIB = None


def _declare(lib):
    op_args = [
        ctypes.c_void_p,  # input
        ctypes.c_int32,  # dtype
        _size_t,  # ndim
        _size_p,  # shape
        _ptrdiff_p,  # strides (elements) or NULL
        _size_p,  # factor
        _size_t,  # num_mips
        ctypes.c_uint32,  # flags
    ]
    for name in OPERATIONS.values():
        fn = getattr(lib, name)
        fn.argtypes = op_args + [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(_ptrdiff_p)]
        fn.restype = ctypes.c_int32
        packed = getattr(lib, name + "_packed")
        packed.argtypes = op_args + [ctypes.c_void_p]
        packed.restype = ctypes.c_int32
    for name in ("tb_mip_shape", "tb_mip_len", "tb_pyramid_len"):
        fn = getattr(lib, name)
        fn.argtypes = [_size_t, _size_p, _size_p, _size_t, _size_p]
        fn.restype = ctypes.c_int32
    lib.tb_last_error_message.argtypes = []
    lib.tb_last_error_message.restype = ctypes.c_char_p
    lib.tb_status_name.argtypes = [ctypes.c_int32]
    lib.tb_status_name.restype = ctypes.c_char_p
    lib.tb_version.argtypes = []
    lib.tb_version.restype = ctypes.c_char_p
    lib.tb_set_num_threads.argtypes = [_size_t]
    lib.tb_set_num_threads.restype = ctypes.c_int32
    lib.tb_get_num_threads.argtypes = []
    lib.tb_get_num_threads.restype = _size_t
    lib.tb_dtype_size.argtypes = [ctypes.c_int32]
    lib.tb_dtype_size.restype = _size_t
    return lib


def load_library():
    """The ctypes handle of the shared library, with every tb_ function declared."""
    global _LIB
    if _LIB is None:
        path = library_path()
        if not path.is_file():
            raise FileNotFoundError(
                f"tinybrain shared library not found at {path}: build it with "
                "`cargo build --release` or set TINYBRAIN_LIB to its path"
            )
        _LIB = _declare(ctypes.CDLL(str(path)))
    return _LIB


# ----------------------------------------------------------------------------
# helpers


def status_name(status):
    """The library's name for a status code."""
    return load_library().tb_status_name(status).decode()


def last_error_message():
    """The message of the last failed call on this thread ('' if none)."""
    return load_library().tb_last_error_message().decode()


def _check(status):
    if status != TB_OK:
        raise TinybrainError(status, status_name(status), last_error_message())


def version():
    return load_library().tb_version().decode()


def set_num_threads(n):
    """Threads later calls run on, the calling one included (0 = one per core)."""
    _check(load_library().tb_set_num_threads(n))


def get_num_threads():
    return load_library().tb_get_num_threads()


def dtype_code(dtype):
    """The tb_dtype code of a numpy dtype (native byte order), or TinybrainError."""
    dtype = np.dtype(dtype)
    code = DTYPE_CODES.get(dtype)
    if code is None:
        raise TinybrainError(TB_ERR_DTYPE, "TB_ERR_DTYPE", f"unsupported dtype {dtype}")
    return code


def _sizes(values):
    return (_size_t * len(values))(*values)


def _factor(factor, ndim):
    """Factor as ndim ints: missing trailing entries are 1, extra trailing 1s dropped."""
    if np.isscalar(factor):
        factor = (factor,)
    out = []
    for f in factor:
        if isinstance(f, (float, np.floating)) and float(f).is_integer():
            f = int(f)
        f = operator.index(f)
        if f < 0:
            raise ValueError(f"factors must be positive, got {tuple(factor)}")
        out.append(f)
    if len(out) > ndim:
        if any(f != 1 for f in out[ndim:]):
            raise ValueError(f"factor {tuple(factor)} is longer than the array's {ndim} axes")
        out = out[:ndim]
    return out + [1] * (ndim - len(out))


def mip_shape(shape, factor, mip):
    """Shape of mip `mip` (0 = the input): ceil(s / f**mip) per axis."""
    shape = tuple(shape)
    factor = _factor(factor, len(shape))
    out = (_size_t * len(shape))()
    _check(load_library().tb_mip_shape(len(shape), _sizes(shape), _sizes(factor), mip, out))
    return tuple(out)


def mip_len(shape, factor, mip):
    """Number of elements of mip `mip`."""
    shape = tuple(shape)
    factor = _factor(factor, len(shape))
    n = _size_t()
    _check(
        load_library().tb_mip_len(len(shape), _sizes(shape), _sizes(factor), mip, ctypes.byref(n))
    )
    return n.value


def pyramid_len(shape, factor, num_mips):
    """Number of elements of mips 1..num_mips together (the packed buffer)."""
    shape = tuple(shape)
    factor = _factor(factor, len(shape))
    n = _size_t()
    _check(
        load_library().tb_pyramid_len(
            len(shape), _sizes(shape), _sizes(factor), num_mips, ctypes.byref(n)
        )
    )
    return n.value


def chunk_alignment(factor, num_mips):
    """factor**num_mips per axis (tb_chunk_alignment), as a tuple with one entry per
    factor entry.

    A chunk that starts at a multiple of it on every axis, and whose size is a
    multiple of it or that ends at the volume's edge, gives exactly the mips of the
    same region of the whole volume, for every method: such chunks can be
    downsampled independently (on other threads, processes or machines) and their
    mips pasted side by side, at offset start // factor**k in mip k.
    """
    if np.isscalar(factor):
        factor = (factor,)
    fac = []
    for f in factor:
        if isinstance(f, (float, np.floating)) and float(f).is_integer():
            f = int(f)
        f = operator.index(f)
        if f < 0:
            raise ValueError(f"factors must be positive, got {tuple(factor)}")
        fac.append(f)
    num_mips = operator.index(num_mips)
    if num_mips < 0:
        raise ValueError("num_mips must be >= 0")
    if num_mips >= 2 ** (8 * ctypes.sizeof(_size_t)):
        raise OverflowError(f"num_mips={num_mips} does not fit in size_t")
    lib = load_library()
    fn = lib.tb_chunk_alignment
    fn.argtypes = [_size_t, _size_p, _size_t, _size_p]
    fn.restype = ctypes.c_int32
    out = (_size_t * max(len(fac), 1))()
    _check(fn(len(fac), _sizes(fac), num_mips, out))
    return tuple(out[: len(fac)])


def _element_strides(arr):
    """numpy byte strides in elements, or None if one is not a whole element."""
    size = arr.itemsize
    if any(s % size for s in arr.strides):
        return None
    return [s // size for s in arr.strides]


def _prepare_input(img):
    """(array, dtype code, ctypes shape, ctypes element strides), no copy when possible."""
    arr = np.asarray(img)
    if not arr.dtype.isnative and arr.dtype.newbyteorder("=") in DTYPE_CODES:
        arr = arr.astype(arr.dtype.newbyteorder("="))  # values, not layout: must convert
    code = dtype_code(arr.dtype)
    strides = _element_strides(arr)
    if strides is None:  # e.g. a field of a packed record array: copy that one array
        arr = arr.copy(order="K")
        strides = _element_strides(arr)
    return arr, code, _sizes(arr.shape), (_ptrdiff_t * arr.ndim)(*strides)


def _call(op, img, factor, num_mips, flags, out):
    lib = load_library()
    arr, code, c_shape, c_strides = _prepare_input(img)
    fac = _factor(factor, arr.ndim)
    num_mips = operator.index(num_mips)
    if num_mips < 0:
        raise ValueError("num_mips must be >= 0")
    shapes = [mip_shape(arr.shape, fac, k) for k in range(1, num_mips + 1)]

    copy_back = []  # (caller array, temporary) for outputs the library cannot address
    if out is None:
        outputs = [np.empty(s, dtype=arr.dtype, order="F") for s in shapes]
        out_strides = None
    else:
        if len(out) != num_mips:
            raise ValueError(f"out has {len(out)} arrays, expected num_mips={num_mips}")
        outputs, out_strides = [], (_ptrdiff_p * max(num_mips, 1))()
        stride_arrays = []  # referenced until the call returns
        for k, (o, s) in enumerate(zip(out, shapes)):
            if not isinstance(o, np.ndarray) or o.dtype != arr.dtype or o.shape != s:
                raise TinybrainError(
                    TB_ERR_OUTPUT,
                    "TB_ERR_OUTPUT",
                    f"out[{k}] must be a {arr.dtype} array of shape {s}, "
                    f"got {getattr(o, 'dtype', type(o))} {getattr(o, 'shape', '')}",
                )
            if not o.flags.writeable:
                raise ValueError(f"out[{k}] is read-only")
            st = _element_strides(o)
            if st is None:
                tmp = np.empty(s, dtype=arr.dtype, order="F")
                copy_back.append((o, tmp))
                o = tmp
                st = _element_strides(o)
            outputs.append(o)
            stride_arrays.append((_ptrdiff_t * arr.ndim)(*st))
            out_strides[k] = ctypes.cast(stride_arrays[-1], _ptrdiff_p)

    ptrs = (ctypes.c_void_p * max(num_mips, 1))(*[o.ctypes.data for o in outputs])
    status = getattr(lib, OPERATIONS[op])(
        arr.ctypes.data,
        code,
        arr.ndim,
        c_shape,
        c_strides,
        _sizes(fac),
        num_mips,
        flags,
        ptrs,
        out_strides,
    )
    _check(status)
    for o, tmp in copy_back:
        o[...] = tmp
    return list(out) if out is not None else outputs


def downsample_with_averaging(img, factor, num_mips=1, sparse=False, out=None):
    """Average pooling; sparse=True leaves zeros out of the mean."""
    return _call("averaging", img, factor, num_mips, TB_SPARSE if sparse else 0, out)


def downsample_segmentation(img, factor, sparse=False, num_mips=1, out=None):
    """Mode pooling (labels); sparse=True treats 0 as background. Note tinybrain's
    argument order: sparse before num_mips."""
    return _call("segmentation", img, factor, num_mips, TB_SPARSE if sparse else 0, out)


def downsample_with_min_pooling(img, factor, num_mips=1, out=None):
    """Minimum over each window (NaN propagates)."""
    return _call("min_pooling", img, factor, num_mips, 0, out)


def downsample_with_max_pooling(img, factor, num_mips=1, out=None):
    """Maximum over each window (NaN propagates)."""
    return _call("max_pooling", img, factor, num_mips, 0, out)


def downsample_with_striding(img, factor, num_mips=1, out=None):
    """The first voxel of each window: out[i] = in[i * f**k]."""
    return _call("striding", img, factor, num_mips, 0, out)


def downsample_packed(op, img, factor, num_mips=1, sparse=False):
    """The `_packed` entry points: all mips in one buffer, each Fortran-ordered.

    op is one of 'averaging', 'segmentation', 'min_pooling', 'max_pooling',
    'striding'. Returns (buffer, mips) where mips are views into the 1-D buffer.
    """
    lib = load_library()
    arr, code, c_shape, c_strides = _prepare_input(img)
    fac = _factor(factor, arr.ndim)
    buf = np.empty(pyramid_len(arr.shape, fac, num_mips), dtype=arr.dtype)
    status = getattr(lib, OPERATIONS[op] + "_packed")(
        arr.ctypes.data,
        code,
        arr.ndim,
        c_shape,
        c_strides,
        _sizes(fac),
        num_mips,
        TB_SPARSE if sparse else 0,
        buf.ctypes.data,
    )
    _check(status)
    mips, start = [], 0
    for k in range(1, num_mips + 1):
        shape = mip_shape(arr.shape, fac, k)
        n = int(np.prod(shape, dtype=np.int64))
        mips.append(buf[start : start + n].reshape(shape, order="F"))
        start += n
    return buf, mips
