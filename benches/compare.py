#!/usr/bin/env python3
"""This library (over ctypes) against tinybrain 1.7.0, side by side, on the same arrays.

    .venv/bin/python benches/compare.py            # full: median of 5 runs, issue-6 sizes
    .venv/bin/python benches/compare.py --quick    # 3 runs, smaller arrays
    .venv/bin/python benches/compare.py --filter mode   # only paths whose name contains TEXT

For every path it times, in one process and interleaved run by run (so a change of load
on the machine hits every column alike):

- ours at 1 thread and at 2 threads: the tinybrain-style call of
  examples-c/python/tinybrain_ctypes.py, which allocates its outputs as tinybrain does;
- ours at 1 and at 2 threads writing into preallocated outputs (`out=`): the kernel
  without the allocation and first-touch page faults of fresh output arrays. The
  two-thread target is judged on these: how fast the OS backs a fresh array is the
  caller's and the machine's (on the 2-vCPU Zen 5 VM, a 2 MiB page first touched on the
  second vCPU took 4.5-5 ms against 0.1 ms on the first, so the allocating two-thread
  call was at times slower than one thread);
- a probe of the machine's two cores, in the same runs: sha256 of 8 MiB on one thread,
  and on two threads at once (`cores_probe`), so that a low two-thread figure can be
  told from a machine that was not giving two threads two cores' worth of compute;
- tinybrain 1.7.0 (called as a black box);
- a memcpy roofline: np.copyto of (input + output) bytes into a preallocated array,
  reported, like every other column, as input megavoxels per second (MVx/s);
- a read bound: one plain pass that only reads the input (`read_input`). A call must
  read its input at least once, so `read / tinybrain` estimates the largest ratio to
  tinybrain that a one-thread implementation can reach on this machine (a pass tuned
  further might read somewhat faster than numpy's).

Each figure is the median of the runs (after one warm-up call, whose results are used
to check once per path that ours and tinybrain computed the same thing). Wall time
(time.perf_counter) and CPU time of the whole process (time.process_time: all threads)
are both reported per call: on a loaded machine wall time grows while CPU time does not,
so a 1-thread figure whose CPU time is well below its wall time was taken under load.

Last come issue 6's targets, each met or missed by the medians. Each verdict also gives
the ratio run by run (from the two calls of the same run) and in how many runs it
reached the target. A verdict near its target that the median puts one way, and several
runs the other, is not settled by one invocation.

The library file is copied to a temporary directory at start, so a rebuild while the
benchmark runs cannot change or break it. Benchmarks are not tests: nothing here asserts
a speed; the exit status is 1 only if a result check fails.

tinybrain is GPL-3; it is only imported and called here, never read or copied.
"""

import argparse
import atexit
import datetime
import gc
import hashlib
import importlib.metadata
import json
import os
import pathlib
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples-c" / "python"))

RUSAGE_KIB = 1024  # ru_maxrss is in KiB on Linux


# ----------------------------------------------------------------------------
# machine


def cpu_model():
    """'model name' of /proc/cpuinfo, with family/model/stepping and the L3 size."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" in line:
                    k, v = line.split(":", 1)
                    info.setdefault(k.strip(), v.strip())
                elif info:
                    break  # first processor only
    except OSError:
        return platform.processor() or "unknown"
    name = info.get("model name", "unknown")
    extra = []
    if "cpu family" in info:
        extra.append(f"family {info['cpu family']} model {info.get('model', '?')}")
    l3 = _l3_size()
    if l3:
        extra.append(f"L3 {l3}")
    extra.append(f"{os.cpu_count()} logical CPUs")
    return f"{name} ({', '.join(extra)})"


def _l3_size():
    base = pathlib.Path("/sys/devices/system/cpu/cpu0/cache")
    for idx in sorted(base.glob("index*")):
        try:
            if (idx / "level").read_text().strip() == "3":
                return (idx / "size").read_text().strip()
        except OSError:
            pass
    return None


def memcpy_note():
    """glibc's threshold for non-temporal stores in memcpy (x86): copies above it
    bypass the cache and run at a different speed, which moves the roofline."""
    try:
        out = subprocess.run(["/lib64/ld-linux-x86-64.so.2", "--list-tunables"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if line.startswith("glibc.cpu.x86_non_temporal_threshold:"):
            value = int(line.split()[1], 16)
            return (f"glibc {platform.libc_ver()[1]} memcpy uses non-temporal stores above "
                    f"{value / 2**20:.0f} MiB (x86_non_temporal_threshold)")
    return None


def load_average():
    try:
        return " ".join(pathlib.Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine_cpu():
    """(seconds of CPU time the whole machine has spent busy, of it stolen by the
    hypervisor), from the first line of /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / hz, steal / hz


def own_cpu():
    """CPU seconds of this process and its finished children."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        total += ru.ru_utime + ru.ru_stime
    return total


class OtherLoad:
    """How many cores other processes kept busy (and the hypervisor stole) between
    start() and stop(): the machine's busy time minus ours, over the wall time."""

    def start(self):
        self.t0, self.own0, (self.busy0, self.steal0) = time.perf_counter(), own_cpu(), \
            machine_cpu()
        return self

    def stop(self):
        wall = time.perf_counter() - self.t0
        busy, steal = machine_cpu()
        others = (busy - self.busy0) - (own_cpu() - self.own0)
        return max(others, 0.0) / wall, (steal - self.steal0) / wall


def git_revision():
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "src"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        return rev + (" (src/ modified)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def snapshot_library():
    """Copy the shared library to a temporary directory and point TINYBRAIN_LIB at it."""
    import tinybrain_ctypes

    user_lib = bool(os.environ.get("TINYBRAIN_LIB"))
    src = tinybrain_ctypes.library_path()
    if not src.is_file():
        sys.exit(f"{src} not found: run `cargo build --release` first (or set TINYBRAIN_LIB)")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="tinybrain-bench-"))
    atexit.register(shutil.rmtree, tmp, True)
    dst = tmp / "libtinybrain.so"
    shutil.copy2(src, dst)
    os.environ["TINYBRAIN_LIB"] = str(dst)
    # Streamed: reading the file whole (over 100 MiB with debug line tables) would raise
    # this process's peak RSS, which the peak-RSS children inherit through fork.
    with open(dst, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()[:12]
    built = src.stat().st_mtime
    mtime = datetime.datetime.fromtimestamp(built).strftime("%Y-%m-%d %H:%M:%S")
    newer = [p for p in (REPO / "src").rglob("*.rs") if p.stat().st_mtime > built]
    if newer and not user_lib:  # the build tree's library: is it older than the source?
        mtime += (f"; WARNING: {len(newer)} file(s) in src/ are newer than this library "
                  f"(e.g. {newer[0].relative_to(REPO)}): run `cargo build --release`")
    return src, dst, digest, mtime


# ----------------------------------------------------------------------------
# data


def splitmix64(x):
    """A 64-bit mix of a uint64 array (wrapping arithmetic): label ids that look random."""
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x += np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def fortran_random(rng, shape, make):
    """An F-ordered array of `shape` filled slice by slice (no full-size temporaries):
    make(rng, (x, y)) gives one z slice."""
    arr = np.empty(shape, dtype=make(rng, (1, 1)).dtype, order="F")
    for z in range(shape[2]):
        arr[:, :, z] = make(rng, shape[:2])
    return arr


def cut_table(rng, n, lo, hi, jitter):
    """Coordinate (0 .. n + jitter) -> cell index along one axis, cells lo..hi-1 wide."""
    widths = rng.integers(lo, hi, size=n // lo + 2)
    edges = np.cumsum(widths)
    return np.searchsorted(edges, np.arange(n + jitter + 1), side="right").astype(np.int64)


def realistic_labels(shape, seed=7, background=0.0):
    """A uint64 segmentation with large constant regions: a Voronoi-like partition made
    cheaply from irregular block grids whose cuts are displaced by smooth jitter plus a
    voxel of noise, so cell walls are wavy and ragged, not straight. Cells are about
    24-56 x 20-44 x 4-12 voxels; ids are random 64-bit values, as in real segmentations.
    `background` is the fraction of cells set to 0 (for sparse mode)."""
    rng = np.random.default_rng(seed)
    sx, sy, sz = shape
    jx, jy, jz = 8, 8, 2
    tx = cut_table(rng, sx, 24, 57, jx)
    ty = cut_table(rng, sy, 20, 45, jy)
    tz = cut_table(rng, sz, 4, 13, jz)
    x = np.arange(sx)
    y = np.arange(sy)
    z = np.arange(sz)
    # arrays are built as (z, y, x) in C order, so .T is the F-ordered (x, y, z) volume
    noise = lambda shp: rng.integers(0, 2, size=shp, dtype=np.int64)  # noqa: E731
    ox = (4 + 4 * np.sin(y[None, :] / 13.0 + z[:, None] * 0.7)).astype(np.int64)  # (z, y)
    cx = tx[(x[None, None, :] + ox[:, :, None] + noise((sz, sy, 1)))]
    oy = (4 + 4 * np.sin(x[None, :] / 17.0 + z[:, None] * 0.5)).astype(np.int64)  # (z, x)
    cy = ty[(y[None, :, None] + oy[:, None, :] + noise((sz, 1, sx)))]
    oz = np.clip(1 + np.sin(x[None, :] / 23.0) + np.cos(y[:, None] / 19.0), 0, jz)  # (y, x)
    oz = oz.astype(np.int64)
    cz = tz[(z[:, None, None] + oz[None, :, :])]
    key = (cz * (ty.max() + 1) + cy) * (tx.max() + 1) + cx
    del cx, cy, cz
    ids = splitmix64(np.arange(int(key.max()) + 1, dtype=np.uint64) + np.uint64(seed << 32))
    if background:
        ids[(ids % np.uint64(1000)) < np.uint64(int(background * 1000))] = 0
    return ids[key].T  # F-ordered (x, y, z)


class Arrays:
    """The benchmark's input arrays, made on first use (so --filter builds only what
    it needs). Full sizes are those of issue 6."""

    def __init__(self, quick):
        self.gray_shape = (512, 512, 16) if quick else (1024, 1024, 64)
        self.label_shape = (256, 256, 32) if quick else (512, 512, 64)
        # 1 GiB: four times the 260 MiB L3 of the Intel guest, so that every byte comes
        # from DRAM (the other inputs, 64 MiB and less, may be served partly from L3)
        self.big_shape = (1024, 1024, 128) if quick else (1024, 1024, 1024)
        self._cache = {}

    def __getitem__(self, key):
        if key not in self._cache:
            self._cache[key] = getattr(self, "_make_" + key)()
        return self._cache[key]

    def _rng(self, key):
        return np.random.default_rng(sum(map(ord, key)))  # fixed seeds: same arrays every run

    def _make_gray(self):
        # uint8 grayscale, uniform random: the worst case for nothing, the usual bench input
        return fortran_random(
            self._rng("gray"), self.gray_shape,
            lambda r, s: r.integers(0, 256, size=s, dtype=np.uint8),
        )

    def _make_gray_big(self):
        return fortran_random(
            self._rng("gray_big"), self.big_shape,
            lambda r, s: r.integers(0, 256, size=s, dtype=np.uint8),
        )

    def _make_gray_sparse(self):
        # the same kind of image with 30% of voxels 0 (for sparse averaging)
        def make(r, s):
            v = r.integers(1, 256, size=s, dtype=np.uint8)
            v[r.random(s) < 0.3] = 0
            return v

        return fortran_random(self._rng("gray_sparse"), self.gray_shape, make)

    def _make_gray_c(self):
        return np.ascontiguousarray(self["gray"])  # same values, C order

    def _make_gray_5d(self):
        sx, sy, sz = self.gray_shape
        return self["gray"].reshape((sx, sy, sz // 4, 2, 2), order="F")  # a view, F order

    def _make_gray_i8(self):
        return self["gray"].view(np.int8)  # the same bytes as int8; keeps F order

    def _make_gray16(self):
        return fortran_random(
            self._rng("gray16"), self.gray_shape,
            lambda r, s: r.integers(0, 2**16, size=s, dtype=np.uint16),
        )

    def _make_grayf32(self):
        return fortran_random(
            self._rng("grayf32"), self.gray_shape,
            lambda r, s: (r.random(s, dtype=np.float32) * 1000).astype(np.float32),
        )

    def _make_i32(self):
        # below 2**22 in magnitude: tinybrain's numpy fallback sums in float32, exactly here
        return fortran_random(
            self._rng("i32"), self.label_shape,
            lambda r, s: r.integers(-(2**22), 2**22, size=s, dtype=np.int32),
        )

    def _make_i64(self):
        # below 2**60 in magnitude: tinybrain sums int64 in 64 bits and would wrap above
        return fortran_random(
            self._rng("i64"), self.label_shape,
            lambda r, s: r.integers(-(2**60), 2**60, size=s, dtype=np.int64),
        )

    def _make_i64_sparse(self):
        # the same values with 30% of voxels 0 (for sparse averaging)
        def make(r, s):
            v = r.integers(-(2**60), 2**60, size=s, dtype=np.int64)
            v[r.random(s) < 0.3] = 0
            return v

        return fortran_random(self._rng("i64_sparse"), self.label_shape, make)

    def _make_labels_random(self):
        return fortran_random(
            self._rng("labels_random"), self.label_shape,
            lambda r, s: r.integers(0, 50, size=s, dtype=np.uint64),
        )

    def _make_labels_real(self):
        return realistic_labels(self.label_shape)

    def _make_labels_real_bg(self):
        return realistic_labels(self.label_shape, seed=11, background=0.25)

    def _make_labels32_random(self):
        return self["labels_random"].astype(np.uint32)  # keeps F order

    def _make_labels32_real(self):
        return (self["labels_real"] & np.uint64(0xFFFFFFFF)).astype(np.uint32)

    def _make_labels8_random(self):
        return self["labels_random"].astype(np.uint8)  # 50 ids; keeps F order

    def _make_labels16_real(self):
        # the low 16 bits of the 64-bit ids: cells that share them merge (rarely)
        return (self["labels_real"] & np.uint64(0xFFFF)).astype(np.uint16)


# ----------------------------------------------------------------------------
# the paths


@dataclass
class Case:
    name: str
    data: str  # key in Arrays
    op: str  # averaging | segmentation | min_pooling | max_pooling | striding
    factor: tuple
    mips: int = 1
    sparse: bool = False
    # "equal": np.array_equal on every mip; "close": float averaging within 1e-6
    # relative (SEMANTICS.md); "mip1": only mip 1 is the same computation (reason in
    # note); "n/c": tinybrain computes something else there, so it is not timed at all
    check: str = "equal"
    note: str = ""
    targets: list = field(default_factory=list)  # (kind, value) pairs, see evaluate()
    tb_copy_views: bool = False  # tinybrain returns views: copy them (same work as ours)


CASES = [
    Case("avg 2x2x1 u8", "gray", "averaging", (2, 2, 1),
         targets=[("ratio", 3.5), ("roofline", 0.8)]),
    Case("avg 2x2x2 u8", "gray", "averaging", (2, 2, 2), targets=[("ratio", 3.0)]),
    Case("avg 2x2x1 u8 4 mips", "gray", "averaging", (2, 2, 1), mips=4,
         targets=[("ratio", 6.0)]),
    Case("avg 2x2x1 u8 sparse", "gray_sparse", "averaging", (2, 2, 1), sparse=True,
         targets=[("ratio", 5.0)]),
    Case("avg 2x2x1 i8", "gray_i8", "averaging", (2, 2, 1),
         note="issue 6 sets the 2x2x1 averaging targets on u8; the u8 row's here",
         targets=[("ratio", 3.5), ("roofline", 0.8)]),
    Case("avg 2x2x1 u16", "gray16", "averaging", (2, 2, 1), targets=[("roofline", 0.8)]),
    Case("avg 2x2x1 f32", "grayf32", "averaging", (2, 2, 1), check="close",
         targets=[("roofline", 0.8)]),
    Case("mode 2x2x1 u64 random", "labels_random", "segmentation", (2, 2, 1),
         targets=[("ratio", 1.5)]),
    Case("mode 2x2x1 u64 realistic", "labels_real", "segmentation", (2, 2, 1),
         targets=[("ratio", 2.3)]),
    Case("mode 2x2x2 u64 random", "labels_random", "segmentation", (2, 2, 2),
         targets=[("ratio", 6.0)]),
    Case("mode 2x2x2 u64 realistic", "labels_real", "segmentation", (2, 2, 2),
         targets=[("ratio", 2.0)]),
    Case("sparse mode 2x2x2 u64 realistic", "labels_real_bg", "segmentation", (2, 2, 2),
         sparse=True, note="25% of cells are background (0)", targets=[("ratio", 5.0)]),
    Case("mode 2x2x1 u32 random", "labels32_random", "segmentation", (2, 2, 1),
         targets=[("ratio", 1.5)]),
    Case("mode 2x2x1 u32 realistic", "labels32_real", "segmentation", (2, 2, 1),
         targets=[("ratio", 2.3)]),
    Case("mode 2x2x2 u8 random", "labels8_random", "segmentation", (2, 2, 2),
         note="issue 6 sets 2x2x2 targets for u64 and u32 labels; the u64 row's here",
         targets=[("ratio", 6.0)]),
    Case("mode 2x2x2 u16 realistic", "labels16_real", "segmentation", (2, 2, 2),
         note="as above", targets=[("ratio", 2.0)]),
    Case("min 2x2x1 u8", "gray", "min_pooling", (2, 2, 1), targets=[("ratio", 50.0)]),
    Case("max 2x2x1 u8", "gray", "max_pooling", (2, 2, 1), targets=[("ratio", 50.0)]),
    Case("striding 2x2x1 u8", "gray", "striding", (2, 2, 1), tb_copy_views=True,
         note="tinybrain returns strided views in O(1); its column times the call plus "
              "np.asfortranarray of each view, the same work as ours",
         targets=[("roofline", 0.8)]),
    Case("striding 2x2x1 u8 C-order input", "gray_c", "striding", (2, 2, 1),
         tb_copy_views=True,
         note="outputs in Fortran order, as tinybrain's: a transposing copy",
         targets=[("roofline", 0.8)]),
    Case("avg 2x2x1 u8 C-order input", "gray_c", "averaging", (2, 2, 1),
         targets=[("generic", 2.0)]),
    Case("avg 2x2x1x1x1 u8 5D", "gray_5d", "averaging", (2, 2, 1, 1, 1),
         note="tinybrain takes its numpy fallback for the factor (2,2,1,1,1)",
         targets=[("generic", 2.0)]),
    Case("avg 2x2x1 i32", "i32", "averaging", (2, 2, 1), targets=[("generic", 2.0)]),
    Case("avg 2x2x1 i64", "i64", "averaging", (2, 2, 1), targets=[("generic", 2.0)]),
    Case("avg 2x2x1 i64 sparse", "i64_sparse", "averaging", (2, 2, 1), sparse=True,
         targets=[("generic", 2.0)]),
    Case("avg 2x2x1 i32 4 mips", "i32", "averaging", (2, 2, 1), mips=4, check="mip1",
         note="tinybrain's numpy fallback: each int32 mip is truncated and re-averaged "
              "in float32, ours divides the exact sum (SEMANTICS.md); mip 1 checked",
         targets=[("generic", 2.0)]),
    Case("avg 2x2x2 i32", "i32", "averaging", (2, 2, 2), targets=[("generic", 2.0)]),
    Case("avg 3x3x1 u8", "gray", "averaging", (3, 3, 1), targets=[("generic", 2.0)]),
    Case("avg 3x3x1 u8 3 mips", "gray", "averaging", (3, 3, 1), mips=3, check="mip1",
         note="tinybrain carries float32 means from mip to mip, ours float64 "
              "(SEMANTICS.md): later mips may differ by one; mip 1 checked",
         targets=[("generic", 2.0)]),
    Case("avg 3x3x1 u8 3 mips C-order input", "gray_c", "averaging", (3, 3, 1), mips=3,
         check="mip1", note="as above, from a C-order input", targets=[("generic", 2.0)]),
    Case("exact mode 3x3x3 u64 realistic", "labels_real", "segmentation", (3, 3, 3),
         check="n/c", note="tinybrain strides for non-power-of-two factors: not comparable",
         targets=[("generic", 2.0)]),
    Case("exact mode 3x3x3 u64 random", "labels_random", "segmentation", (3, 3, 3),
         check="n/c", note="windows of 27 labels from 50 ids, mostly all different: the "
                           "count every label needs; tinybrain strides: not comparable",
         targets=[("generic", 2.0)]),
    Case("exact mode 4x4x4 u64 realistic", "labels_real", "segmentation", (4, 4, 4),
         check="n/c",
         note="tinybrain runs its 2x2x2 numpy mode twice (a mode of modes), not the "
              "exact 4x4x4 mode: not comparable",
         targets=[("generic", 2.0)]),
    # Last: the 1 GiB input and its 1.3 GiB copy roofline stay allocated to the end.
    Case("avg 2x2x1 u8 big input", "gray_big", "averaging", (2, 2, 1),
         note="the big grayscale input (see 'mode' above; 1 GiB in a full run) does not "
              "fit in L3: ours, tinybrain and the read pass all stream it from DRAM. "
              "Issue 6's speed targets are set on the 64 MiB input, so only the 2-thread one "
              "is checked here"),
    Case("avg 2x2x1 u8 4 mips big input", "gray_big", "averaging", (2, 2, 1), mips=4,
         note="as above, with 4 mips"),
]

GENERIC_REFERENCE = "mode 2x2x2 u64 random"  # "within 2x of the 2x2x2 u64 mode cost"
GENERIC_REFERENCE_2 = "mode 2x2x2 u64 realistic"


# ----------------------------------------------------------------------------
# calling both libraries


def ours_call(tbc, case, arr, out=None):
    if case.op == "averaging":
        return tbc.downsample_with_averaging(arr, case.factor, case.mips, case.sparse, out=out)
    if case.op == "segmentation":
        return tbc.downsample_segmentation(arr, case.factor, case.sparse, case.mips, out=out)
    if case.op == "min_pooling":
        return tbc.downsample_with_min_pooling(arr, case.factor, case.mips, out=out)
    if case.op == "max_pooling":
        return tbc.downsample_with_max_pooling(arr, case.factor, case.mips, out=out)
    if case.op == "striding":
        return tbc.downsample_with_striding(arr, case.factor, case.mips, out=out)
    raise ValueError(case.op)


def tinybrain_call(case, arr):
    import tinybrain
    import tinybrain.downsample

    if case.op == "averaging":
        out = tinybrain.downsample_with_averaging(arr, case.factor, num_mips=case.mips,
                                                  sparse=case.sparse)
    elif case.op == "segmentation":
        out = tinybrain.downsample_segmentation(arr, case.factor, sparse=case.sparse,
                                                num_mips=case.mips)
    elif case.op == "min_pooling":  # not re-exported at top level in 1.7.0
        out = tinybrain.downsample.downsample_with_min_pooling(arr, case.factor,
                                                               num_mips=case.mips)
    elif case.op == "max_pooling":
        out = tinybrain.downsample_with_max_pooling(arr, case.factor, num_mips=case.mips)
    elif case.op == "striding":
        out = tinybrain.downsample_with_striding(arr, case.factor, num_mips=case.mips)
    else:
        raise ValueError(case.op)
    if case.tb_copy_views:
        out = [np.asfortranarray(o) for o in out]
    return out


def check_results(case, ours, theirs):
    """'ok ...' or 'FAIL ...': ours against tinybrain, once per path."""
    if len(ours) != len(theirs):
        return f"FAIL: {len(ours)} mips vs {len(theirs)}"
    mips = range(1 if case.check == "mip1" else len(ours))
    for k in mips:
        a, b = ours[k], np.asarray(theirs[k])
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"FAIL: mip {k + 1} {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        if case.check == "close":
            scale = float(np.abs(b).max()) or 1.0
            if not np.allclose(a, b, rtol=1e-6, atol=1e-6 * scale):
                return f"FAIL: mip {k + 1} differs beyond 1e-6"
        elif not np.array_equal(a, b):
            bad = int(np.count_nonzero(a != b))
            return f"FAIL: mip {k + 1}, {bad} voxels differ"
    if case.check == "close":
        return "ok (1e-6)"
    if case.check == "mip1":
        return "ok (mip 1)"
    return "ok (equal)"


# ----------------------------------------------------------------------------
# timing


class Roofline:
    """np.copyto of n bytes between two preallocated, touched buffers."""

    def __init__(self):
        self.src = self.dst = np.zeros(0, np.uint8)

    def fn(self, nbytes):
        if self.src.size < nbytes:
            self.src = self.dst = None
            gc.collect()
            self.src = np.ones(nbytes, np.uint8)
            self.dst = np.ones(nbytes, np.uint8)
        src, dst = self.src[:nbytes], self.dst[:nbytes]
        return lambda: np.copyto(dst, src)


def read_input(arr):
    """A call that reads every byte of `arr` once and writes nothing: np.bitwise_or.reduce
    over its memory as 64-bit words (the bytes past the last whole word are left out).
    On the Intel guest it reads 128-512 MiB at 17-18 GB/s, like np.add.reduce, and
    faster than np.max over bytes."""
    flat = arr.reshape(-1, order="A").view(np.uint8)  # memory order, a view if contiguous
    words = flat[: flat.size // 8 * 8].view(np.uint64)
    return lambda: np.bitwise_or.reduce(words)


PROBE_BYTES = bytes(8 << 20)


def cores_probe(threads):
    """Compute-only work, the same on each of `threads` threads at once: sha256 of 8 MiB
    (hashlib lets go of the GIL), about 4 ms. Two threads take as long as one where the
    machine runs them on two cores at full speed. In one full run on the 2-vCPU Zen 5
    guest, exact mode on two threads took as long as on one, both threads busy all the
    while, which the table could not tell from a kernel that does not scale. Compute
    only: the probe does not see what the threads get from memory."""
    def work():
        hashlib.sha256(PROBE_BYTES).digest()

    if threads == 1:
        return work

    def together():
        helper = threading.Thread(target=work)
        helper.start()
        work()
        helper.join()

    return together


def timed(fn):
    t0 = time.perf_counter()
    c0 = time.process_time()
    out = fn()
    c1 = time.process_time()
    t1 = time.perf_counter()
    del out  # freed outside the timed region
    return t1 - t0, c1 - c0


@dataclass
class Result:
    case: Case
    voxels: int
    nbytes: int  # input + all outputs
    wall: dict = field(default_factory=dict)  # column -> median seconds
    runs: dict = field(default_factory=dict)  # column -> seconds of each run, in run order
    cpu: dict = field(default_factory=dict)
    check: str = ""
    tb_status: str = ""  # "" (ran), "n/a: ...", "n/c"
    others: float = 0.0  # cores busy with other processes during the timed runs
    steal: float = 0.0

    def cores(self):
        """How many cores' worth of compute two threads got in this path's runs."""
        return 2 * self.wall["cores1"] / self.wall["cores2"]

    def mvx(self, col):
        t = self.wall.get(col)
        return self.voxels / t / 1e6 if t else None


def run_case(tbc, arrays, case, runs, roofline):
    arr = arrays[case.data]
    shapes = [tbc.mip_shape(arr.shape, case.factor, k) for k in range(1, case.mips + 1)]
    out_bytes = sum(int(np.prod(s)) for s in shapes) * arr.itemsize
    res = Result(case, arr.size, arr.nbytes + out_bytes)

    prealloc = [np.empty(s, dtype=arr.dtype, order="F") for s in shapes]
    variants = {
        "ours1": (1, lambda: ours_call(tbc, case, arr)),
        "ours1_out": (1, lambda: ours_call(tbc, case, arr, out=prealloc)),
        "ours2": (2, lambda: ours_call(tbc, case, arr)),
        "ours2_out": (2, lambda: ours_call(tbc, case, arr, out=prealloc)),
        "memcpy": (None, roofline.fn(res.nbytes)),
        "read": (None, read_input(arr)),
        "cores1": (None, cores_probe(1)),
        "cores2": (None, cores_probe(2)),
    }

    # warm-up: one call of each; ours and tinybrain checked on these results
    tbc.set_num_threads(1)
    mine = ours_call(tbc, case, arr)
    tbc.set_num_threads(2)
    mine2 = ours_call(tbc, case, arr)
    same_threads = all(np.array_equal(a, b) for a, b in zip(mine, mine2))
    ours_call(tbc, case, arr, out=prealloc)
    same_out = all(np.array_equal(a, b) for a, b in zip(mine, prealloc))
    if case.check == "n/c":
        res.tb_status = "n/c"
        res.check = "skipped: not comparable"
    else:
        try:
            theirs = tinybrain_call(case, arr)
        except Exception as e:  # tinybrain cannot run this path
            res.tb_status = f"n/a: {type(e).__name__}: {e}"
            res.check = "n/a"
        else:
            variants["tb"] = (None, lambda: tinybrain_call(case, arr))
            res.check = check_results(case, mine, theirs)
            del theirs
    if not same_threads:
        res.check = "FAIL: 1 thread and 2 threads differ; " + res.check
    if not same_out:
        res.check = "FAIL: out= differs; " + res.check
    del mine, mine2
    variants["memcpy"][1]()  # warm the copy
    variants["read"][1]()

    samples = {k: [] for k in variants}
    load = OtherLoad().start()
    for _ in range(runs):
        for col, (threads, fn) in variants.items():
            if threads is not None and tbc.get_num_threads() != threads:
                tbc.set_num_threads(threads)
            samples[col].append(timed(fn))
    res.others, res.steal = load.stop()
    for col, s in samples.items():
        res.runs[col] = [w for w, _ in s]
        res.wall[col] = statistics.median(w for w, _ in s)
        res.cpu[col] = statistics.median(c for _, c in s)
    return res


# ----------------------------------------------------------------------------
# peak RSS of one 4-mip u8 2x2x1 call, in a child process


def rss_child(which, shape):
    """Runs in the child: make the input slice by slice, then one call; prints JSON."""
    import tinybrain_ctypes as tbc

    if which == "ours":
        tbc.load_library()
        tbc.set_num_threads(0)  # every core: scratch is O(threads x block)
    else:
        import tinybrain  # noqa: F401
    baseline = current_rss()
    img = fortran_random(np.random.default_rng(3), shape,
                         lambda r, s: r.integers(0, 256, size=s, dtype=np.uint8))
    with_input = current_rss()
    case = Case("rss", "gray", "averaging", (2, 2, 1), mips=4)
    out = ours_call(tbc, case, img) if which == "ours" else tinybrain_call(case, img)
    print(json.dumps({
        "baseline": baseline,
        "with_input": with_input,
        "input": img.nbytes,
        "outputs": sum(o.nbytes for o in out),
        "self_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * RUSAGE_KIB,
    }))


def current_rss():
    """This process's resident set size now, in bytes (VmRSS)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * RUSAGE_KIB


def measure_rss(which, shape):
    """Peak RSS of a child process that makes the input and calls `which` once."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--rss-child", which, "--shape", ",".join(map(str, shape))],
        stdout=subprocess.PIPE, text=True, env=os.environ.copy(),
    )
    stdout = proc.stdout.read()
    proc.stdout.close()
    # os.wait4 returns this child's own getrusage(RUSAGE_CHILDREN) figures
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        return None
    data = json.loads(stdout)
    data["peak"] = usage.ru_maxrss * RUSAGE_KIB
    return data


# ----------------------------------------------------------------------------
# report


def fmt(x, digits=0):
    if x is None:
        return "n/a"
    return f"{x:,.{digits}f}"


def ratio(a, b):
    """a / b as "1.23x", or "12.3x" from 10 up (three significant digits either way)."""
    if not (a and b):
        return "n/a"
    q = a / b
    return f"{q:.{1 if q >= 10 else 2}f}x"


def print_tables(results):
    print("\nThroughput: input megavoxels per second (MVx/s, median of wall times). ours = "
          "the tinybrain-style call (allocates its outputs, as tinybrain does); out= = ours "
          "into preallocated outputs; 2t / 1t = 2 threads over 1, both out=; 2-core probe = "
          "the compute two threads got in this row's runs, in cores (sha256 on 1 and on 2 "
          "threads: 2.00x where two cores were there, 1.00x where the machine gave one "
          "core's worth); 'same, CPU time' = tinybrain's CPU seconds per call / ours at 1 "
          "thread (less sensitive to load); read = one pass reading the input and writing "
          "nothing (numpy), about the bound on any call; read / tb = the ratio to tinybrain "
          "of that pass alone.\n")
    head = ["path", "ours 1t", "ours 1t out=", "ours 2t", "ours 2t out=", "tinybrain",
            "ours 1t / tb", "same, CPU time", "2t / 1t", "2-core probe", "memcpy",
            "ours 1t / memcpy", "read", "read / tb", "ours 1t / read", "check"]
    rows = []
    for r in results:
        o1, o1o, o2, m = r.mvx("ours1"), r.mvx("ours1_out"), r.mvx("ours2"), r.mvx("memcpy")
        o2o = r.mvx("ours2_out")
        rd = r.mvx("read")
        if r.tb_status == "n/c":
            tb_s, rat, rat_cpu, ceiling = "not comparable", "n/c", "n/c", "n/c"
        elif r.tb_status:
            tb_s, rat, rat_cpu, ceiling = "n/a", "n/a", "n/a", "n/a"
        else:
            tb = r.mvx("tb")
            tb_s, rat, ceiling = fmt(tb), ratio(o1, tb), ratio(rd, tb)
            rat_cpu = ratio(r.cpu["tb"], r.cpu["ours1"])
        rows.append([r.case.name, fmt(o1), fmt(o1o), fmt(o2), fmt(o2o), tb_s, rat, rat_cpu,
                     ratio(o2o, o1o), ratio(r.cores(), 1), fmt(m), f"{o1 / m:.0%}", fmt(rd),
                     ceiling, f"{o1 / rd:.0%}", r.check])
    print_markdown(head, rows)

    print("\nPer call (median): wall ms / CPU ms of the whole process (time.process_time, "
          "all threads). CPU well below wall on a 1-thread column means the machine was "
          "busy. 'other load': cores kept busy by other processes during this path's timed "
          "runs (/proc/stat; 2 cores means the 2-thread figures cannot be trusted).\n")
    head = ["path", "voxels", "in+out MiB", "ours 1t", "ours 1t out=", "ours 2t", "ours 2t out=",
            "tinybrain", "memcpy", "read", "other load"]
    rows = []
    for r in results:
        def cell(col):
            if col not in r.wall:
                return "n/c" if r.tb_status == "n/c" else "n/a"
            return f"{r.wall[col] * 1e3:.1f} / {r.cpu[col] * 1e3:.1f}"

        rows.append([r.case.name, f"{r.voxels / 1e6:.1f} M", f"{r.nbytes / 2**20:.0f}",
                     cell("ours1"), cell("ours1_out"), cell("ours2"), cell("ours2_out"),
                     cell("tb"), cell("memcpy"), cell("read"),
                     f"{r.others:.1f}" + (f" +{r.steal:.1f} stolen" if r.steal >= 0.05 else "")])
    print_markdown(head, rows)

    notes = [(r.case.name, r.case.note) for r in results if r.case.note]
    notes += [(r.case.name, "tinybrain " + r.tb_status) for r in results
              if r.tb_status.startswith("n/a")]
    if notes:
        print("\nNotes:")
        for name, note in notes:
            print(f"- {name}: {note}")


def print_markdown(head, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "| " + " | ".join(  # noqa: E731
        str(c).ljust(w) if i == 0 or i == len(cells) - 1 else str(c).rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths))) + " |"
    print(line(head))
    print("|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":"
                         for i, w in enumerate(widths)) + "|")
    for row in rows:
        print(line(row))


def run_by_run(r, faster, slower, want, percent=False):
    """How `faster`'s speed over `slower`'s varied over the runs, each from the two calls
    of one run, and in how many runs it reached `want`: a verdict near its target that
    the median puts one way, and several runs the other, is not settled by this run."""
    ratios = [s / f for f, s in zip(r.runs[faster], r.runs[slower])]
    met = sum(x >= want for x in ratios)
    span = (f"{min(ratios):.0%}-{max(ratios):.0%}" if percent
            else f"{min(ratios):.2f}-{max(ratios):.2f}x")
    return f" (run by run {span}, at the target in {met} of {len(ratios)})"


def evaluate(results, rss):
    """Issue 6's targets, met or missed, from this run's figures."""
    by_name = {r.case.name: r for r in results}
    lines = []

    def verdict(ok):
        return "met" if ok else "MISSED"

    ref = [by_name.get(GENERIC_REFERENCE), by_name.get(GENERIC_REFERENCE_2)]
    for r in results:
        o1, m = r.mvx("ours1"), r.mvx("memcpy")
        for kind, want in r.case.targets:
            if kind == "ratio":
                if "tb" not in r.wall:
                    continue
                got = o1 / r.mvx("tb")
                ceiling = r.mvx("read") / r.mvx("tb")
                bound = (f"; a pass that only reads the input is {ceiling:.2f}x tinybrain" +
                         (": the target lies beyond this machine's read bandwidth"
                          if ceiling < want else ""))
                lines.append(f"{r.case.name}: ours/tinybrain {got:.2f}x, target >= {want}x: "
                             f"{verdict(got >= want)}{run_by_run(r, 'ours1', 'tb', want)}{bound}")
            elif kind == "roofline":
                got = o1 / m
                lines.append(f"{r.case.name}: {got:.0%} of memcpy roofline (1 thread), target "
                             f">= {want:.0%}: {verdict(got >= want)}"
                             f"{run_by_run(r, 'ours1', 'memcpy', want, percent=True)}")
            elif kind == "generic":
                if ref[0] is None:
                    lines.append(f"{r.case.name}: reference '{GENERIC_REFERENCE}' not run")
                    continue
                cost = 1 / o1  # seconds per megavoxel
                rel = cost / (1 / ref[0].mvx("ours1"))
                extra = ""
                if ref[1] is not None:
                    extra = f" ({cost / (1 / ref[1].mvx('ours1')):.2f}x of realistic)"
                lines.append(f"{r.case.name}: cost per voxel {rel:.2f}x our mode 2x2x2 u64 "
                             f"random{extra}, target <= {want}x: {verdict(rel <= want)}")
        # 2 threads: >= 1.7x our one-thread figure wherever one thread is below the roofline,
        # both into preallocated outputs as the memcpy roofline is (see the module doc)
        o1o, o2o = r.mvx("ours1_out"), r.mvx("ours2_out")
        if o1o < m:
            got = o2o / o1o
            lines.append(f"{r.case.name}: 2 threads {got:.2f}x of 1 thread, out= (1 thread at "
                         f"{o1o / m:.0%} of roofline), target >= 1.7x: {verdict(got >= 1.7)}"
                         f"{run_by_run(r, 'ours2_out', 'ours1_out', 1.7)}; "
                         f"two compute-only threads got {r.cores():.2f} cores in these runs" +
                         (" (the machine's two cores were not there)" if r.cores() < 1.7 else ""))
    if rss:
        for which, d in rss.items():
            if d is None:
                lines.append(f"peak RSS ({which}): child failed")
                continue
            rel = (d["peak"] - d["baseline"]) / (d["input"] + d["outputs"])
            if which == "ours":
                lines.append(f"peak RSS of a 4-mip u8 2x2x1 call: {rel:.2f}x (input + outputs), "
                             f"target < 1.3x: {verdict(rel < 1.3)}")
    print("\nIssue 6 targets (one thread unless noted):")
    for line in lines:
        print("- " + line)


def print_rss(rss, shape):
    print(f"\nPeak RSS, one 4-mip u8 2x2x1 call on {'x'.join(map(str, shape))} in a child "
          "process (its ru_maxrss from os.wait4; 'baseline' = the child's RSS after its imports, "
          "before the input exists; measured first, before this process grows):\n")
    head = ["library", "input MiB", "outputs MiB", "baseline MiB", "with input MiB", "peak MiB",
            "(peak - baseline) / (input + outputs)", "peak / (input + outputs)"]
    rows = []
    for which, d in rss.items():
        if d is None:
            rows.append([which] + ["failed"] * 7)
            continue
        io = d["input"] + d["outputs"]
        rows.append([which, f"{d['input'] / 2**20:.1f}", f"{d['outputs'] / 2**20:.1f}",
                     f"{d['baseline'] / 2**20:.1f}", f"{d['with_input'] / 2**20:.1f}",
                     f"{d['peak'] / 2**20:.1f}",
                     f"{(d['peak'] - d['baseline']) / io:.2f}x", f"{d['peak'] / io:.2f}x"])
    print_markdown(head, rows)


# ----------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 runs, smaller arrays")
    ap.add_argument("--filter", metavar="TEXT", help="only paths whose name contains TEXT")
    ap.add_argument("--runs", type=int, help="timed runs per path (default 5, --quick 3)")
    ap.add_argument("--rss-child", choices=["ours", "tinybrain"], help=argparse.SUPPRESS)
    ap.add_argument("--shape", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.rss_child:
        rss_child(args.rss_child, tuple(int(s) for s in args.shape.split(",")))
        return 0

    start = time.perf_counter()
    run_load = OtherLoad().start()
    load_start = load_average()
    src, _lib, digest, mtime = snapshot_library()
    import tinybrain_ctypes as tbc

    runs = args.runs or (3 if args.quick else 5)
    arrays = Arrays(args.quick)
    cases = [c for c in CASES if not args.filter or args.filter.lower() in c.name.lower()]
    want_rss = not args.filter or args.filter.lower() in "peak rss"
    if not cases and not want_rss:
        sys.exit(f"no path matches {args.filter!r}")

    print("# tinybrain (Rust, C ABI) vs tinybrain 1.7.0 (Python)")
    print(f"date:       {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(f"CPU:        {cpu_model()}")
    print(f"load avg:   {load_start} (1, 5, 15 min) at start")
    print(f"ours:       {src} (built {mtime}, sha256 {digest}, version {tbc.version()}), "
          f"git {git_revision()}")
    print(f"tinybrain:  {importlib.metadata.version('tinybrain')}, numpy {np.__version__}, "
          f"Python {platform.python_version()}")
    note = memcpy_note()
    if note:
        print(f"memcpy:     {note}")
    print(f"mode:       {'quick' if args.quick else 'full'}, median of {runs} runs after a "
          f"warm-up; grayscale {'x'.join(map(str, arrays.gray_shape))}, labels "
          f"{'x'.join(map(str, arrays.label_shape))}, big grayscale "
          f"{'x'.join(map(str, arrays.big_shape))}")
    sys.stdout.flush()

    # Peak RSS first, while this process is small: a child's ru_maxrss starts from the
    # RSS of the process it was forked (or vforked) from, so later it would show ours.
    rss = None
    if want_rss:
        rss = {w: measure_rss(w, arrays.gray_shape) for w in ("ours", "tinybrain")}

    gc.disable()
    results = []
    roofline = Roofline()
    for case in cases:
        t0 = time.perf_counter()
        r = run_case(tbc, arrays, case, runs, roofline)
        results.append(r)
        gc.collect()
        tb = fmt(r.mvx("tb")) if "tb" in r.wall else r.tb_status[:3]
        print(f"  {case.name}: ours {fmt(r.mvx('ours1'))} MVx/s (1 thread), tinybrain {tb}, "
              f"check {r.check}, other load {r.others:.1f} cores "
              f"[{time.perf_counter() - t0:.1f} s]", file=sys.stderr)
    gc.enable()


    if results:
        print_tables(results)
    if rss:
        print_rss(rss, arrays.gray_shape)
    evaluate(results, rss)

    failed = [r.case.name for r in results if r.check.startswith("FAIL")]
    others, steal = run_load.stop()
    print(f"\nload avg:   {load_average()} at end; other processes kept {others:.1f} of "
          f"{os.cpu_count()} cores busy on average during the run"
          + (f" (and the hypervisor stole {steal:.1f})" if steal >= 0.05 else ""))
    print(f"runtime:    {time.perf_counter() - start:.0f} s")
    print(f"reproduce:  .venv/bin/python benches/compare.py{' --quick' if args.quick else ''}"
          f"{' --filter ' + repr(args.filter) if args.filter else ''}")
    if failed:
        print(f"\nRESULT CHECK FAILED for: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
