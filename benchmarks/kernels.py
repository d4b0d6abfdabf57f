"""Gamma-engine kernel benchmark: incremental per-tick updates vs a full numpy recompute.

    python benchmarks/kernels.py --json

On a synthetic 24,000-contract SPX-like chain (connectors.simulator.chains): per-option-tick
cost of the incremental profile update (remove old / add new, all three buckets) at G=200 and
G=1000, in batches (one kernel call per batch, as the streaming engine applies them) and one
tick per kernel call; the full rebuild; levels of every bucket; and the naive way in the same
run, a full numpy recompute of the profile per tick. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.simulator.chains import spx_like_chain
from engine.core import kernels as k
from engine.core.book import GammaBook
from engine.core.config import LevelsConfig
from engine.core.levels import compute_levels


def numpy_full_profile(book: GammaBook, row_bits: int = k.BUCKET_ALL) -> np.ndarray:
    """The naive method: every contract × every grid point, vectorised numpy, from raw fields."""
    n = book.n_slots
    f = book.slot_f[:, :n]
    keep = (book.slot_i[k.I_BUCKETS, :n] & row_bits) != 0
    keep &= (f[k.F_TAU] > 0) & (f[k.F_IV] > 0)
    strike, tau, iv = f[k.F_STRIKE, keep], f[k.F_TAU, keep], f[k.F_IV, keep]
    basis, pos, mult = f[k.F_BASIS, keep], f[k.F_POSITION, keep], f[k.F_MULTIPLIER, keep]
    forward = book.grid_spots[:, None] * basis[None, :]
    sd = iv * np.sqrt(tau)
    d1 = (np.log(forward / strike) + 0.5 * sd * sd) / sd
    gamma = np.exp(-0.5 * d1 * d1) / (math.sqrt(2 * math.pi) * forward * sd)
    return (pos * mult * gamma * forward * forward * 0.01).sum(axis=1)


def make_ticks(book: GammaBook, n: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    live = np.flatnonzero(book.slot_i[k.I_LIVE, : book.n_slots] == 1)
    slots = rng.choice(live, size=n).astype(np.int64)
    f = book.slot_f
    iv = f[k.F_IV, slots] * rng.uniform(0.97, 1.03, n)
    position = f[k.F_POSITION, slots] * rng.choice([1.0, 1.0, 1.0, 1.01], n)
    basis = f[k.F_BASIS, slots].copy()
    venue_gamma = f[k.F_VENUE_GAMMA, slots].copy()
    return slots, iv, position, basis, venue_gamma


def time_ticks(book: GammaBook, ticks: tuple[np.ndarray, ...], batch: int, rounds: int) -> float:
    """Median µs per tick, applying ``ticks`` in kernel calls of ``batch`` ticks."""
    slots, iv, position, basis, venue_gamma = ticks
    n = slots.shape[0]
    # Slicing outside the timed loop: the views are what a consumer would hand the kernel.
    chunks = [
        (
            slots[i : i + batch],
            iv[i : i + batch],
            position[i : i + batch],
            basis[i : i + batch],
            venue_gamma[i : i + batch],
        )
        for i in range(0, n, batch)
    ]
    args = (book.profile, book.log_s, book.log_step, book.slot_f, book.slot_i)
    results = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for chunk in chunks:
            k.apply_quotes(*args, *chunk)
        results.append((time.perf_counter_ns() - start) / 1e3 / n)
    return statistics.median(results)


def time_call(fn, rounds: int) -> float:
    """Median milliseconds of ``fn()``."""
    results = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        fn()
        results.append((time.perf_counter_ns() - start) / 1e6)
    return statistics.median(results)


def run(n_contracts: int, ticks: int, quick: bool) -> dict:
    k.warm_up()
    chain = spx_like_chain(n_contracts, seed=7)
    rounds = 3 if quick else 7
    out: dict = {
        "n_contracts": len(chain.contracts),
        "ticks_timed": ticks,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    books = {}
    for grid in (200, 1000):
        book = GammaBook("SPX", "cboe", LevelsConfig(grid_points=grid), chain.spot, chain.asof_ns)
        book.load(chain)
        books[grid] = book
        tick_data = make_ticks(book, ticks, seed=grid)
        out[f"per_tick_us_g{grid}"] = time_ticks(book, tick_data, batch=1_000, rounds=rounds)
        single = tuple(a[: max(ticks // 10, 1_000)] for a in tick_data)
        out[f"single_tick_call_us_g{grid}"] = time_ticks(book, single, batch=1, rounds=rounds)
        out[f"full_rebuild_ms_g{grid}"] = time_call(book.rebuild, rounds)
        out[f"levels_ms_g{grid}"] = time_call(lambda b=book: compute_levels(b), rounds)
        # Correctness of what was timed: after all those ticks the incremental profile still
        # equals the naive recompute.
        naive = numpy_full_profile(book)
        incremental = book.profile[0]
        out[f"max_rel_diff_vs_numpy_g{grid}"] = float(
            np.max(np.abs(incremental - naive)) / np.max(np.abs(naive))
        )
    book = books[200]
    out["numpy_full_recompute_per_tick_ms"] = time_call(
        lambda: numpy_full_profile(book), 3 if quick else 5
    )
    out["speedup_vs_numpy"] = (
        out["numpy_full_recompute_per_tick_ms"] * 1e3 / out["per_tick_us_g200"]
    )
    out["speedup_vs_numpy_g1000"] = (
        time_call(lambda: numpy_full_profile(books[1000]), 3) * 1e3 / out["per_tick_us_g1000"]
    )
    out["targets"] = {
        "per_tick_us_g200_max": 1.5,
        "speedup_vs_numpy_min": 10_000,
        "full_rebuild_ms_g200_max": 10.0,
    }
    out["targets_met"] = {
        "per_tick_us_g200": out["per_tick_us_g200"] <= 1.5,
        "speedup_vs_numpy": out["speedup_vs_numpy"] >= 10_000,
        "full_rebuild_ms_g200": out["full_rebuild_ms_g200"] <= 10.0,
    }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (default)")
    parser.add_argument("--contracts", type=int, default=24_000)
    parser.add_argument("--ticks", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (smoke run)")
    args = parser.parse_args()
    result = run(args.contracts, args.ticks, args.quick)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
