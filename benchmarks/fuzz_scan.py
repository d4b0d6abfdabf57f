"""Fuzz benchmark: mutated real CBOE bodies through the byte scanner, bounds-checked.

    python benchmarks/fuzz_scan.py --json [--cases 50000] [--seed N]

The long run of ``tests/connectors/cboe/test_scan_bounds.py`` (which runs 3,000 cases):
numba compiled with ``NUMBA_BOUNDSCHECK=1`` into a cache of its own (a bounds-checked
kernel raises IndexError instead of reading past an array), mutations of real bodies drawn
by hypothesis (``tests/connectors/cboe/scan_fuzz.py``). Prints one JSON object: ``cases``,
``out_of_bounds``, ``crashes``, ``disagreements`` (all must be 0; the exit status is 1
otherwise), how many were read and how many left to the decoder, and the first failures
with the mutations that made them.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Read by numba when it is imported, so set before anything imports it.
os.environ["NUMBA_BOUNDSCHECK"] = "1"
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(tempfile.gettempdir()) / "numba-boundscheck"))
os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # the pieces are still cut, read in turn
sys.path.insert(0, str(ROOT))

from tests.connectors.cboe.scan_fuzz import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(default_cases=50_000))
