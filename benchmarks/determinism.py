"""Live equals replay over many random cases (the scenario of
``tests/stream/live_replay.py``).

Each case copies one simulator session into fresh topics in random per-topic chunks with
random pauses while engines of one group consume live, with a random ``max_records``,
checkpoint interval, hard-stop-and-restart point and handover point between two engines;
then one engine of another group reads the finished log. A case is equal when the Redis
stream (event ids, order, payloads) and the latest levels are the same on both sides and
no engine gave up on a record or released one out of its producer's order.

``python benchmarks/determinism.py --json --count N`` prints one JSON object: cases tried,
cases equal, the seeds of the unequal ones, and the time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redis.asyncio import Redis

from connectors.common.kafka.embedded import EmbeddedKafka
from connectors.common.redis_embedded import EmbeddedRedis
from tests.stream.live_replay import Case, Outcome, run_case, staged_session


def draw(rng: random.Random) -> Case:
    """A random case, over the same space as the property test's strategy."""
    return Case(
        seed=rng.randrange(2**32),
        max_records=rng.randint(10, 400),
        checkpoint_interval_s=rng.choice([0.05, 0.2, 1.0]),
        kill_at=rng.uniform(0.0, 1.2),
        handover_at=rng.uniform(0.0, 1.2),
    )


def equal(out: Outcome) -> bool:
    return (
        len(out.replay_events) >= 2
        and out.live_events == out.replay_events
        and out.live_levels is not None
        and out.live_levels == out.replay_levels
        and all(r.merge_gaps == 0 and r.merge_forced == 0 for r in out.reports)
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    rng = random.Random(args.seed)
    unequal: list[dict[str, Any]] = []  # the cases that were not equal (rerun them)
    tried = 0
    async with EmbeddedKafka() as kafka, EmbeddedRedis() as redis:
        base = redis.url.rsplit("/", 1)[0]
        with tempfile.TemporaryDirectory() as tmp:
            staged = await staged_session(kafka.bootstrap, Path(tmp))
        for n in range(args.count):
            case = draw(rng)
            live_url, reference_url = f"{base}/{(2 * n) % 16}", f"{base}/{(2 * n + 1) % 16}"
            for url in (live_url, reference_url):
                await redis_flush(url)
            tried += 1
            error = None
            case_started = time.perf_counter()
            try:
                ok = equal(await run_case(kafka.bootstrap, live_url, reference_url, staged, case))
            except AssertionError as exc:  # a wait ran out: not equal
                ok, error = False, str(exc)
            if not ok:
                unequal.append({"case": repr(case), "error": error})
            took = time.perf_counter() - case_started
            verdict = "equal" if ok else "UNEQUAL"
            print(f"case {n}: {verdict} in {took:.1f} s {case}", file=sys.stderr)
    return {
        "cases_tried": tried,
        "cases_equal": tried - len(unequal),
        "unequal": unequal,
        "seed": args.seed,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


async def redis_flush(url: str) -> None:
    client = Redis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--count", type=int, default=30, help="random cases to try")
    parser.add_argument("--seed", type=int, default=1, help="seed of the case draws")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0 if result["cases_equal"] == result["cases_tried"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
