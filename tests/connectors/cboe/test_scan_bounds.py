"""The CBOE byte scanner never reads out of bounds: mutated real bodies, bounds-checked numba.

The fuzz (``scan_fuzz.py``) runs in a child process with ``NUMBA_BOUNDSCHECK=1`` and a numba
cache of its own (kept in pytest's cache, so later runs skip the compile): this process's
compiled kernels, and the project's numba cache, stay unchecked. A longer run:
``python benchmarks/fuzz_scan.py --json --cases 100000``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CASES = 3000


def fuzz(cache: pytest.Cache, cases: int) -> dict:
    """The fuzz's report, from a child process with bounds-checked kernels."""
    env = {
        **os.environ,
        "NUMBA_BOUNDSCHECK": "1",
        "NUMBA_CACHE_DIR": str(cache.mkdir("numba-boundscheck")),
        "NUMBA_NUM_THREADS": "1",  # the pieces are still cut and read, one after the other
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "tests.connectors.cboe.scan_fuzz", "--json", "--cases"]
    done = subprocess.run(
        [*command, str(cases)], check=False, cwd=ROOT, env=env, capture_output=True, timeout=900
    )
    assert done.stdout, done.stderr.decode()[-3000:]
    return json.loads(done.stdout)


def test_mutated_real_bodies_are_never_read_out_of_bounds_nor_misread(pytestconfig):
    report = fuzz(pytestconfig.cache, CASES)
    assert report["boundscheck"], "the child's kernels are not bounds-checked"
    assert report["cases"] >= CASES
    failed = {name: report[name] for name in ("out_of_bounds", "crashes", "disagreements")}
    assert failed == {"out_of_bounds": 0, "crashes": 0, "disagreements": 0}, report
    assert report["unmutated_accepted"], report  # the real bodies themselves are read
    assert report["accepted"] > CASES // 20 and report["fell_back"] > CASES // 2, report
