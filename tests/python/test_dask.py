"""Chunked pyramids on a local Dask cluster (examples-c/python/dask_pyramid.py).

Several worker processes on loopback build the pyramid chunk by chunk (each chunk
one library call, through the ctypes module) and write it to a zarr store; every
mip read back must equal one library call on the whole volume, bit for bit. The
volumes are the example's synthetic ones: a segmentation with large constant cells
and 0 between them (uint64), and EM-like grayscale (uint8).
"""

import numpy as np
import pytest

import dask.array as da
import zarr
from distributed import Client, LocalCluster, get_task_stream

import dask_pyramid as dp
import tinybrain_ctypes as tb
from datagen import assert_exact

pytestmark = pytest.mark.usefixtures("lib")

WORKERS = 3


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of WORKERS processes with one thread each, on loopback."""
    with LocalCluster(
        n_workers=WORKERS,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster, Client(cluster) as c:
        yield c


def single_call(source, method, factor, num_mips, sparse):
    vol = source[...]
    return vol, dp.downsample(method, vol, factor, num_mips, sparse)


# kind, shape, chunks, method, sparse, factor, num_mips
JOBS = [
    ("labels", (150, 140, 37), (64, 64, 16), "segmentation", False, (2, 2, 1), 4),
    ("labels", (100, 90, 50), (32, 32, 16), "segmentation", True, (2, 2, 2), 3),
    ("labels", (100, 91, 20), (40, 40, 8), "segmentation", True, (3, 3, 1), 2),
    ("em", (200, 150, 20), (64, 64, 8), "averaging", False, (2, 2, 1), 5),
    ("em", (100, 90, 50), (32, 32, 16), "averaging", True, (2, 2, 2), 3),
    ("em", (130, 100, 12), (64, 64, 4), "min_pooling", False, (2, 2, 1), 3),
    ("em", (100, 91, 20), (40, 40, 8), "max_pooling", False, (3, 3, 1), 2),
    ("em", (130, 100, 12), (64, 64, 4), "striding", False, (2, 2, 1), 3),
]


@pytest.mark.parametrize(
    "kind,shape,chunks,method,sparse,factor,num_mips",
    JOBS,
    ids=[f"{j[0]}-{j[3]}{'-sparse' if j[4] else ''}-f{''.join(map(str, j[5]))}" for j in JOBS],
)
def test_dask_pyramid_equals_single_call(
    client, tmp_path, kind, shape, chunks, method, sparse, factor, num_mips
):
    with get_task_stream(client) as stream:
        timings, group, source = dp.build_pyramid(
            client,
            tmp_path / "pyramid.zarr",
            method,
            factor,
            num_mips,
            sparse=sparse,
            chunks=chunks,
            kind=kind,
            shape=shape,
            log=lambda msg: None,
        )
    vol, whole = single_call(source, method, factor, num_mips, sparse)
    assert vol.shape == shape and vol.dtype == (np.uint64 if kind == "labels" else np.uint8)
    for k, expected in enumerate(whole, start=1):
        stored = group[str(k)]
        assert stored.shape == expected.shape
        assert_exact(stored[...], expected, what=f"{kind} {method} mip {k}")
    # the volume was really cut into several chunks, spread over several processes
    alignment = tb.chunk_alignment(factor, num_mips)
    grid = dp.aligned_chunks(shape, chunks, alignment)
    assert np.prod([len(c) for c in grid]) > 1
    workers = {t["worker"] for t in stream.data if "_block_pyramid" in t["key"][0]}
    assert len(workers) >= 2, f"pyramid tasks ran on {workers}"


def test_float_edge_chunk_is_merged_and_exact(client):
    """aligned_chunks merges a sliver of an edge chunk into its neighbour, and the
    float64 pyramid of that chunking is exact."""
    rng = np.random.default_rng(7)
    vol = (dp.synthetic_block("em", 3, (0, 0, 0), (131, 70, 6)) / 7.0).astype(np.float64)
    vol += rng.random(vol.shape) * 1e-3
    factor, num_mips = (2, 2, 1), 4
    chunks = dp.aligned_chunks(vol.shape, (32, 32, 6), tb.chunk_alignment(factor, num_mips))
    assert chunks[0] == (32, 32, 32, 35)  # 131 = 4 * 32 + 3: the 3 joins the last 32
    mips = dp.pyramid(da.from_array(vol, chunks=chunks), "averaging", factor, num_mips)
    got = client.gather(client.compute(mips))
    for k, (g, e) in enumerate(zip(got, tb.downsample_with_averaging(vol, factor, num_mips)), 1):
        assert_exact(g, e, what=f"float64 mip {k}")


def test_command_line(client, tmp_path, capsys):
    """The example's command line, on the test's cluster (--scheduler)."""
    store = tmp_path / "cli.zarr"
    argv = ["--scheduler", client.scheduler.address, "--kind", "em", "--shape", "96", "80",
            "20", "--mips", "3", "--chunks", "32", "32", "8", "--store", str(store),
            "--verify", "--repeat", "2"]
    assert dp.main(argv) == 0
    out = capsys.readouterr().out
    assert "verify: 3 mips equal bit for bit" in out
    assert out.count("pyramid: averaging") == 2
    group = zarr.open_group(str(store), mode="r")
    assert group.attrs["tinybrain"]["factor"] == [2, 2, 1]
    assert [group[str(k)].shape for k in range(4)] == [
        (96, 80, 20), (48, 40, 20), (24, 20, 20), (12, 10, 20)
    ]
    # a 2-D labels volume read back from the store with --input
    store2 = tmp_path / "cli2.zarr"
    argv = ["--scheduler", client.scheduler.address, "--kind", "labels", "--shape", "100", "70",
            "--factor", "2", "2", "--mips", "2", "--chunks", "40", "40", "--store", str(store2)]
    assert dp.main(argv) == 0
    argv = ["--scheduler", client.scheduler.address, "--input", str(store2 / "0"),
            "--factor", "2", "2", "--mips", "3", "--chunks", "64", "64", "--store",
            str(tmp_path / "cli3.zarr"), "--sparse", "--verify"]
    assert dp.main(argv) == 0
    assert "verify: 3 mips equal bit for bit" in capsys.readouterr().out


def test_chunk_helpers():
    assert dp.aligned_chunks((100, 64, 5), (30, 64, 2), (16, 16, 1)) == (
        (32, 32, 36),  # 30 -> 32; the 4-voxel edge merges into the last full chunk
        (64,),
        (2, 2, 1),
    )
    assert dp.aligned_chunks((10,), (100,), (4,)) == ((10,),)
    assert dp.aligned_chunks((70,), (8,), (64,)) == ((70,),)  # at least one alignment
    assert dp.aligned_chunks((100,), (16,), (16,)) == ((16,) * 5 + (20,),)
    assert dp.aligned_chunks((105,), (16,), (16,)) == ((16,) * 6 + (9,),)  # 9 > 16 / 2
    dp.check_chunks(((32, 32, 36), (64,)), (16, 16))
    with pytest.raises(ValueError, match="alignment"):
        dp.check_chunks(((24, 24, 52),), (16,))
    assert dp.mip_chunks(((32, 32, 5),), (2,), 2) == ((8, 8, 2),)
    assert dp.store_chunks(((4, 4, 4, 2),), (14,), 64) == (14,)
    assert dp.store_chunks(((16,) * 9 + (3,),), (147,), 64) == (64,)
    assert dp.store_chunks(((128, 100),), (228,), 64) == (128,)
    with pytest.raises(ValueError, match="alignment"):
        dp.pyramid(da.zeros((40, 40), chunks=(12, 12), dtype=np.uint8), "averaging", (2, 2), 3)
    with pytest.raises(ValueError, match="sparse"):
        dp.downsample("min_pooling", np.zeros((4, 4), np.uint8), (2, 2), 1, sparse=True)


def test_synthetic_volumes_are_chunk_independent_and_realistic():
    shape = (120, 100, 30)
    for kind in ("labels", "em"):
        whole = dp.synthetic_block(kind, 5, (0, 0, 0), shape)
        chunked = dp.synthetic(kind, shape, ((50, 50, 20), (33, 67), (7, 23)), 5).compute(
            scheduler="sync"
        )
        assert_exact(chunked, whole, what=kind)
        assert_exact(dp.synthetic_block(kind, 5, (50, 33, 7), (20, 20, 5)),
                     whole[50:70, 33:53, 7:12], what=kind)
    labels = dp.synthetic_block("labels", 0, (0, 0, 0), shape)
    ids = np.unique(labels)
    assert 30 < len(ids) < 400 and ids[0] == 0 and ids[-1] > 2**40  # many cells, big ids
    assert 0.1 < (labels == 0).mean() < 0.4  # borders and unlabelled cells
    blocks = labels.reshape(60, 2, 50, 2, 15, 2)
    uniform = (blocks == blocks[:, :1, :, :1, :, :1]).all(axis=(1, 3, 5)).mean()
    assert uniform > 0.6  # large constant regions
    em = dp.synthetic_block("em", 0, (0, 0, 0), shape)
    assert em.dtype == np.uint8 and 90 < em.mean() < 160
    assert em[labels == 0].mean() < em[labels != 0].mean() - 30  # dark membranes
