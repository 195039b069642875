"""Python test suite of the tinybrain C library (through ctypes).

The library under test is $TINYBRAIN_LIB, else <repo>/target/release/libtinybrain.so.
If it is missing, every test that needs it fails with a message saying so (nothing
is skipped); tests of the reference models against the tinybrain 1.7.0 oracle still run.
"""

import os
import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "examples-c" / "python"))
sys.path.insert(0, str(HERE))

import tinybrain_ctypes  # noqa: E402

from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis.database import DirectoryBasedExampleDatabase  # noqa: E402

# Bounded property tests: deadline off (first calls pay for thread start-up),
# examples per test from HYPOTHESIS_MAX_EXAMPLES (default 100), failing examples
# remembered under target/ (git-ignored) so that a rerun replays them first.
settings.register_profile(
    "tinybrain",
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "100")),
    deadline=None,
    database=DirectoryBasedExampleDatabase(str(REPO / "target" / "hypothesis")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile("tinybrain")


def pytest_report_header(config):
    path = tinybrain_ctypes.library_path()
    state = "present" if path.is_file() else "MISSING (build with `cargo build --release`)"
    return [f"tinybrain library: {path} [{state}]"]


@pytest.fixture(scope="session")
def lib():
    """The ctypes handle; fails the test with a clear message if the library is missing."""
    try:
        return tinybrain_ctypes.load_library()
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def rng(request):
    """A generator seeded from the test's id: reproducible, different per test."""
    import zlib

    import numpy as np

    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def threads(lib):
    """Set the worker thread count for one test and restore the default after."""
    yield tinybrain_ctypes.set_num_threads
    tinybrain_ctypes.set_num_threads(0)
