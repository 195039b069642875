#!/usr/bin/env python3
"""Chunked image pyramids on a Dask cluster, bit for bit equal to one whole-volume call.

    python examples-c/python/dask_pyramid.py --kind em --shape 1024 1024 256 \\
        --factor 2 2 1 --mips 5 --chunks 256 256 64 --workers 2 --store /tmp/em.zarr

builds mips 1..N of a volume that is larger than one chunk: dask.array cuts the
volume into chunks aligned with tb_chunk_alignment (factor**num_mips per axis), each
chunk's whole pyramid is made by one library call on a worker process (through the
ctypes module, tinybrain_ctypes.py), and every mip is written to a chunked zarr store:
<store>/0 is the input, <store>/1 .. <store>/N the mips. With --verify the client
then reads the store back and checks every mip against one call on the whole volume.

The input is a synthetic volume (--kind labels: a segmentation with large constant
cells and a background of 0 between them, uint64; --kind em: EM-like uint8 grayscale
with dark membranes, per-cell brightness and noise) generated chunk by chunk on the
workers and written to <store>/0 first, or an existing zarr array (--input PATH).
The generator is a pure function of the voxel coordinates (integer arithmetic
only), so any chunking gives the same volume.

Why this is exact: a chunk that starts at a multiple of factor**num_mips on every
axis and whose size is a multiple of it (or that ends at the volume's edge) has
exactly the mips of the same region of the whole volume, for every method. Mip k of
the chunk then sits at start // factor**k in mip k of the volume, and the chunks of
mip k tile it. See README.md, "Chunked and distributed pyramids".

Without --scheduler, a LocalCluster of --workers processes is started on loopback;
with --scheduler tcp://HOST:8786 the job runs on that cluster (every worker needs
libtinybrain.so at the same path or in $TINYBRAIN_LIB, tinybrain_ctypes.py and this
file importable, numpy, dask, distributed and zarr, and the store at a path or URL
that all workers and the client can reach).
"""

import argparse
import operator
import os
import pathlib
import sys
import time

import dask.array as da
import numpy as np
import zarr

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import tinybrain_ctypes as tb  # noqa: E402

METHODS = ("averaging", "segmentation", "min_pooling", "max_pooling", "striding")


def downsample(method, img, factor, num_mips, sparse=False):
    """Mips 1..num_mips of a numpy array (one library call)."""
    if method == "averaging":
        return tb.downsample_with_averaging(img, factor, num_mips, sparse=sparse)
    if method == "segmentation":
        return tb.downsample_segmentation(img, factor, sparse=sparse, num_mips=num_mips)
    if sparse:
        raise ValueError(f"sparse is only defined for averaging and segmentation, not {method}")
    return getattr(tb, "downsample_with_" + method)(img, factor, num_mips)


def full_factor(factor, ndim):
    """The factor as ndim ints (missing trailing entries are 1)."""
    factor = tuple(int(f) for f in factor)
    if len(factor) > ndim:
        raise ValueError(f"factor {factor} has more entries than the volume's {ndim} axes")
    return factor + (1,) * (ndim - len(factor))


# ----------------------------------------------------------------------------
# chunk arithmetic


def aligned_chunks(shape, chunks, alignment):
    """Dask chunks (a tuple of chunk sizes per axis) for a volume of `shape`: the
    wanted chunk size rounded up to a multiple of the alignment (at least one
    alignment), the last chunk on an axis ending at the volume's edge.

    A last chunk of at most half an alignment is merged into the one before it
    (which stays aligned: it starts at a multiple and ends at the edge), so no task
    is spent on a sliver. Any aligned chunking is exact, merged or not
    (tests/python/test_chunks.py).
    """
    out = []
    for size, want, align in zip(shape, chunks, alignment):
        step = max(align, -(-int(want) // align) * align)
        sizes = [step] * (size // step)
        if size % step:
            sizes.append(size % step)
        if len(sizes) > 1 and 2 * sizes[-1] <= align:
            sizes[-2:] = [sizes[-2] + sizes[-1]]
        out.append(tuple(sizes))
    return tuple(out)


def check_chunks(chunks, alignment):
    """ValueError unless every chunk but the last on each axis is a multiple of the
    alignment (then every chunk also starts at a multiple of it)."""
    for axis, (sizes, align) in enumerate(zip(chunks, alignment)):
        bad = [c for c in sizes[:-1] if c % align]
        if bad:
            raise ValueError(
                f"axis {axis}: chunks {sizes} are not multiples of the alignment {align} "
                f"(factor**num_mips); rechunk with aligned_chunks()"
            )


def mip_chunks(chunks, factor, k):
    """The chunks of mip k: ceil(c / f**k) for each chunk c of the input."""
    return tuple(tuple(-(-c // f**k) for c in sizes) for sizes, f in zip(chunks, factor))


# ----------------------------------------------------------------------------
# the pyramid as dask arrays


def _block_pyramid(block, method, factor, num_mips, sparse, lib_threads):
    """Runs on a worker: the whole pyramid of one chunk, as a tuple of mips."""
    if not block.flags.aligned:
        # Arrays that came over the network can sit at any byte offset in the
        # received frame; the library refuses (TB_ERR_STRIDES) a pointer that is
        # not aligned to its element size, so such a block is copied once.
        block = block.copy()
    if lib_threads is not None and tb.get_num_threads() != lib_threads:
        tb.set_num_threads(lib_threads)
    return tuple(downsample(method, block, factor, num_mips, sparse))


def pyramid(img, method, factor, num_mips, sparse=False, lib_threads=1):
    """Mips 1..num_mips of the dask array `img`, as lazy dask arrays.

    img's chunks must be aligned (aligned_chunks, check_chunks). One task per chunk
    computes that chunk's whole pyramid in one library call; mip k is then a
    blockwise selection of element k-1, so nothing is computed twice. lib_threads
    sets the library's own threads in each worker (None leaves it alone): 1 by
    default, since Dask already runs one task per worker thread.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; one of {METHODS}")
    factor = full_factor(factor, img.ndim)
    alignment = tb.chunk_alignment(factor, num_mips)
    check_chunks(img.chunks, alignment)
    meta = np.empty((0,) * img.ndim, dtype=img.dtype)
    # Blocks of this array are tuples of mips; it is never computed by itself.
    blocks = img.map_blocks(
        _block_pyramid, method, factor, num_mips, sparse, lib_threads, dtype=img.dtype, meta=meta
    )
    return [
        blocks.map_blocks(
            operator.itemgetter(k - 1),
            chunks=mip_chunks(img.chunks, factor, k),
            dtype=img.dtype,
            meta=meta,
        )
        for k in range(1, num_mips + 1)
    ]


def store_chunks(chunks, shape, min_chunk):
    """Storage chunks for one mip: the dask chunk size, times the smallest whole
    number that reaches min_chunk voxels per axis (capped by the axis), so deep
    mips are not stored as thousands of tiny objects. After a cheap rechunk (it
    concatenates neighbouring blocks), each storage chunk is written by exactly one
    task."""
    out = []
    for sizes, size in zip(chunks, shape):
        c = sizes[0]
        out.append(min(size, c * -(-min(min_chunk, size) // c)))
    return tuple(out)


def store_pyramid(mips, group, min_chunk=64, attrs=None):
    """Create <group>/1 .. <group>/N and return one lazy task writing all mips."""
    sources, targets = [], []
    for k, mip in enumerate(mips, start=1):
        chunks = store_chunks(mip.chunks, mip.shape, min_chunk)
        if any(c != sizes[0] for c, sizes in zip(chunks, mip.chunks)):
            mip = mip.rechunk(chunks)
        arr = group.create_array(
            str(k), shape=mip.shape, chunks=chunks, dtype=mip.dtype, fill_value=0, overwrite=True
        )
        arr.attrs.update(dict(attrs or {}, mip=k))
        sources.append(mip)
        targets.append(arr)
    return da.store(sources, targets, lock=False, compute=False)


# ----------------------------------------------------------------------------
# synthetic volumes: pure integer functions of the coordinates

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
CELL = (40, 40, 12)  # cell size in voxels (x, y, z): anisotropic, like EM stacks


def _mix(h):
    """splitmix64's finalizer on uint64 arrays (wrapping arithmetic)."""
    h = (h ^ (h >> np.uint64(30))) * _M1
    h = (h ^ (h >> np.uint64(27))) * _M2
    return h ^ (h >> np.uint64(31))


def _hash(seed, *coords):
    h = np.full((1,) * coords[0].ndim, (int(seed) * 0x9E3779B97F4A7C15) % 2**64, np.uint64)
    for c in coords:
        h = _mix(h + _GOLDEN + c.astype(np.uint64))
    return h


def _triangle(t, period, amplitude):
    """An integer triangle wave in [-amplitude, amplitude]."""
    return amplitude * (4 * np.abs(t % period - period // 2) - period) // period


def _cells(seed, offset, shape):
    """Cell ids (three int64 arrays), the distance in voxels to the nearest cell
    border within a slice (x, y), and whether a voxel is on the first slice of its
    cell (z), for the box at offset."""
    x, y, z = (np.arange(o, o + n, dtype=np.int64) for o, n in zip(offset, shape))
    x, y, z = x[:, None, None], y[None, :, None], z[None, None, :]
    sx, sy, sz = CELL
    xw = x + _triangle(y + 3 * z, 64, 6)  # wavy borders
    yw = y + _triangle(x - 2 * z, 56, 5)
    zw = z + _triangle(x + y, 90, 2)
    cy, cz = yw // sy, zw // sz
    xw = xw + (_hash(seed, cy, cz) % np.uint64(sx)).astype(np.int64)  # brick-like rows
    cx = xw // sx
    rx, ry, rz = xw % sx, yw % sy, zw % sz
    d_xy = np.minimum(np.minimum(rx, sx - 1 - rx), np.minimum(ry, sy - 1 - ry))
    return (cx, cy, cz), d_xy, rz == 0


def synthetic_block(kind, seed, offset, shape):
    """One box of the synthetic volume (a numpy array of `shape` at `offset`,
    2 or 3 axes). Any box of the same volume gives the same voxels."""
    shape3 = tuple(shape) + (1,) * (3 - len(shape))
    offset3 = tuple(offset) + (0,) * (3 - len(offset))
    (cx, cy, cz), d_xy, z_border = _cells(seed, offset3, shape3)
    cell = _hash(seed, cx, cy, cz)
    if kind == "labels":
        ids = (cell >> np.uint64(8)) | np.uint64(1)  # large ids, as in real segmentations
        ids = np.where(cell % np.uint64(10) == 0, np.uint64(0), ids)  # unlabelled cells
        out = np.where((d_xy == 0) | z_border, np.uint64(0), ids)  # borders
        out = np.broadcast_to(out, shape3)
    elif kind == "em":
        x, y, z = (np.arange(o, o + n, dtype=np.int64) for o, n in zip(offset3, shape3))
        noise = _hash(seed + 1, x[:, None, None], y[None, :, None], z[None, None, :])
        value = 150 + (cell % np.uint64(41)).astype(np.int64) - 20
        value = value - np.where(cell % np.uint64(7) == 0, 35, 0)  # darker organelle-rich cells
        membrane = np.choose(np.minimum(d_xy, 3), [100, 60, 25, 0])
        value = value - membrane - np.where(z_border, 40, 0)
        value = value + (noise % np.uint64(33)).astype(np.int64) - 16
        out = np.clip(value, 0, 255).astype(np.uint8)
    else:
        raise ValueError(f"unknown kind {kind!r}: 'labels' or 'em'")
    return np.ascontiguousarray(out.reshape(shape))


def _synthetic_dask_block(kind, seed, block_info=None):
    info = block_info[None]
    offset = [lo for lo, _ in info["array-location"]]
    return synthetic_block(kind, seed, offset, info["chunk-shape"])


def synthetic(kind, shape, chunks, seed=0):
    """The synthetic volume as a lazy dask array with the given chunks."""
    dtype = np.uint64 if kind == "labels" else np.uint8
    return da.map_blocks(
        _synthetic_dask_block,
        kind,
        seed,
        chunks=chunks,
        dtype=dtype,
        meta=np.empty((0,) * len(shape), dtype),
    )


# ----------------------------------------------------------------------------
# the whole job


def _cpu_seconds():
    """User + system CPU time of this worker process (all its threads)."""
    t = os.times()
    return t.user + t.system


def _wanted(chunks, shape):
    """Wanted chunk sizes, one per axis: extra entries dropped, missing ones the
    whole axis."""
    chunks = tuple(int(c) for c in (chunks or ()))[: len(shape)]
    return chunks + tuple(shape[len(chunks):])


def build_pyramid(
    client,
    store,
    method,
    factor,
    num_mips,
    sparse=False,
    chunks=None,
    input=None,
    kind="labels",
    shape=None,
    seed=0,
    min_store_chunk=64,
    lib_threads=1,
    log=print,
):
    """Write the input (synthetic, unless `input` names a zarr array) to
    <store>/0 and mips 1..num_mips to <store>/1.. on the cluster of `client`.
    Returns a dict of timings in seconds ('input' and 'pyramid' wall time,
    'worker_cpu': CPU time the workers spent on the pyramid), the zarr group and
    the input zarr array."""
    group = zarr.open_group(str(store), mode="a")
    timings = {}
    t0 = time.perf_counter()
    if input is None:
        shape = tuple(int(s) for s in shape)
        factor = full_factor(factor, len(shape))
        alignment = tb.chunk_alignment(factor, num_mips)
        in_chunks = aligned_chunks(shape, _wanted(chunks, shape), alignment)
        vol = synthetic(kind, shape, in_chunks, seed)
        source = group.create_array(
            "0",
            shape=shape,
            chunks=tuple(c[0] for c in in_chunks),
            dtype=vol.dtype,
            fill_value=0,
            overwrite=True,
        )
        source.attrs.update({"mip": 0, "synthetic": kind, "seed": seed})
        client.gather(client.compute(da.store(vol, source, lock=False, compute=False)))
        timings["input"] = time.perf_counter() - t0
        log(f"input: {kind} {shape} {vol.dtype} written to {store}/0 in {timings['input']:.2f} s")
    else:
        source = zarr.open_array(str(input), mode="r")
        shape = source.shape
        factor = full_factor(factor, len(shape))
        alignment = tb.chunk_alignment(factor, num_mips)
        in_chunks = aligned_chunks(shape, _wanted(chunks or source.chunks, shape), alignment)
        timings["input"] = 0.0

    cpu0 = client.run(_cpu_seconds)
    t0 = time.perf_counter()
    img = da.from_zarr(source, chunks=in_chunks)
    mips = pyramid(img, method, factor, num_mips, sparse, lib_threads)
    attrs = {"method": method, "factor": list(factor), "sparse": bool(sparse)}
    group.attrs.update({"tinybrain": dict(attrs, num_mips=num_mips)})
    client.gather(client.compute(store_pyramid(mips, group, min_store_chunk, attrs)))
    timings["pyramid"] = time.perf_counter() - t0
    cpu1 = client.run(_cpu_seconds)
    timings["worker_cpu"] = sum(cpu1[w] - cpu0.get(w, 0.0) for w in cpu1)
    nbytes = int(np.prod(shape)) * source.dtype.itemsize
    log(
        f"pyramid: {method}{' (sparse)' if sparse else ''} factor {factor} x {num_mips} mips, "
        f"{img.npartitions} chunks of up to {tuple(max(c) for c in in_chunks)}: "
        f"{timings['pyramid']:.2f} s ({nbytes / 2**20 / timings['pyramid']:.0f} MiB/s of input), "
        f"{timings['worker_cpu']:.2f} CPU-s in {len(cpu1)} worker processes"
    )
    return timings, group, source


def verify(source, group, method, factor, num_mips, sparse=False, log=print):
    """Compare <group>/1.. with one library call on the input array, bit for bit."""
    vol = source[...]
    whole = downsample(method, vol, full_factor(factor, vol.ndim), num_mips, sparse)
    bad = []
    for k, expected in enumerate(whole, start=1):
        got = group[str(k)][...]
        same = got.shape == expected.shape and got.dtype == expected.dtype
        same = same and np.array_equal(
            np.ascontiguousarray(got).view(np.uint8), np.ascontiguousarray(expected).view(np.uint8)
        )
        if not same:
            bad.append(k)
    log(f"verify: {num_mips} mips {'DIFFER at ' + str(bad) if bad else 'equal bit for bit'}")
    return not bad


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--kind", choices=("labels", "em"), default="labels", help="synthetic volume")
    p.add_argument("--shape", type=int, nargs="+", default=[512, 512, 128],
                   help="x y [z] size of the synthetic volume (default 512 512 128)")
    p.add_argument("--input", help="read the volume from this zarr array instead")
    p.add_argument("--method", choices=METHODS, help="default: segmentation for labels and "
                   "for a 32/64-bit integer --input, else averaging")
    p.add_argument("--sparse", action="store_true")
    p.add_argument("--factor", type=int, nargs="+", default=[2, 2, 1], help="default 2 2 1")
    p.add_argument("--mips", type=int, default=4, help="number of mips (default 4)")
    p.add_argument("--chunks", type=int, nargs="+", default=[256, 256, 64],
                   help="chunk size, rounded up to factor**mips (default 256 256 64)")
    p.add_argument("--store", default="pyramid.zarr", help="output zarr group (default "
                   "./pyramid.zarr)")
    p.add_argument("--min-store-chunk", type=int, default=64,
                   help="smallest stored chunk edge for deep mips (default 64)")
    p.add_argument("--scheduler", help="address of a running scheduler, e.g. tcp://host:8786; "
                   "default: start a LocalCluster")
    p.add_argument("--workers", type=int, default=2,
                   help="LocalCluster worker processes (default 2)")
    p.add_argument("--threads-per-worker", type=int, default=1)
    p.add_argument("--lib-threads", type=int, default=1,
                   help="library threads in each worker (default 1; 0 = the library default: "
                   "$TINYBRAIN_NUM_THREADS, else one per core)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=1, help="time the pyramid stage N times")
    p.add_argument("--verify", action="store_true",
                   help="check every mip against one call on the whole volume (needs it in RAM)")
    args = p.parse_args(argv)
    if args.mips < 1:
        p.error("--mips must be at least 1")
    if args.input is None and len(args.shape) not in (2, 3):
        p.error("--shape takes 2 or 3 sizes")
    if args.method is None:
        if args.input:
            dtype = zarr.open_array(args.input, mode="r").dtype
            labels = dtype.kind in "iu" and dtype.itemsize >= 4
        else:
            labels = args.kind == "labels"
        args.method = "segmentation" if labels else "averaging"
    return args


def main(argv=None):
    args = parse_args(argv)
    from distributed import Client, LocalCluster

    if args.scheduler:
        cluster, client = None, Client(args.scheduler)
    else:
        cluster = LocalCluster(
            n_workers=args.workers,
            threads_per_worker=args.threads_per_worker,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        client = Client(cluster)
    try:
        print(f"cluster: {client}")
        input_ = args.input
        for i in range(args.repeat):
            _, group, source = build_pyramid(
                client,
                args.store,
                args.method,
                args.factor,
                args.mips,
                sparse=args.sparse,
                chunks=args.chunks,
                input=input_,
                kind=args.kind,
                shape=args.shape,
                seed=args.seed,
                min_store_chunk=args.min_store_chunk,
                lib_threads=args.lib_threads or None,
            )
            input_ = input_ or os.path.join(args.store, "0")  # generate once
        ok = True
        if args.verify:
            ok = verify(source, group, args.method, args.factor, args.mips, args.sparse)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
