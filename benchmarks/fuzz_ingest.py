"""Fuzz benchmark: mutated Deribit messages through the ingest path.

    python benchmarks/fuzz_ingest.py --json [--mutants 100000] [--instruments 3000]

A seeded simulated session is mixed with mutants (``connectors.simulator.malformed``: each
invalid or harmless by construction) until ``--mutants`` have been made, round after
round with fresh seeds. Every message takes the live path (decode once, normalise, route)
into an in-memory sink. Counted per message:

- ``accepted_invalid``: an invalid mutant that produced records instead of a dead letter;
- ``rejected_valid``: a clean or harmless message that was dead-lettered;
- ``crashes``: an exception that escaped the ingest stage;
- ``rounds_with_changed_records``: rounds whose records differ from the clean session's.

All four must be 0. The naive baseline in the same run is plain ``json.loads`` of the same
messages. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.common.ingest import IngestStage, MemorySink, decode_json
from connectors.deribit.normaliser import DeribitNormaliser
from connectors.simulator.deribit_config import SessionConfig
from connectors.simulator.deribit_session import generate_session
from connectors.simulator.malformed import HARMLESS, Mutant, mixed_session
from schemas.config import ConfigError
from schemas.topics import Topics


async def ingest_round(mixed: list, counts: Counter) -> tuple[float, list]:
    """Feed one mixed session through a fresh stage; returns (seconds, records)."""
    sink = MemorySink()
    stage = IngestStage("deribit", DeribitNormaliser(), sink, Topics(), source="fuzz")
    start = time.perf_counter()
    for item in mixed:
        message = item.message if isinstance(item, Mutant) else item
        invalid = isinstance(item, Mutant) and not item.valid
        dead_before = stage.counts["dead_letters"]
        try:
            doc, error = decode_json(message.raw)
            routed = await stage.on_message(
                message.raw, doc, message.recv_ns, message.request, decode_error=error
            )
        except Exception:  # counting what escapes is the point
            counts["crashes"] += 1
            continue
        dead = stage.counts["dead_letters"] > dead_before
        if invalid and (routed or not dead):
            counts["accepted_invalid"] += 1
        if not invalid and dead:
            counts["rejected_valid"] += 1
    elapsed = time.perf_counter() - start
    for kind, n in stage.dead_letter_kinds.items():
        counts[f"class:{kind}"] += n
    counts["dead_letters"] += stage.counts["dead_letters"]
    return elapsed, sink.records


def plain_json(messages: list) -> float:
    start = time.perf_counter()
    for message in messages:
        with contextlib.suppress(ValueError):
            json.loads(message.raw)
    return time.perf_counter() - start


def run(n_mutants: int, n_instruments: int, duration_s: float, rate: float) -> dict:
    config = SessionConfig(
        n_instruments=n_instruments, duration_s=duration_s, seed=11, ticker_interval_s=1.0
    )
    clean = list(generate_session(config))
    clean_counts: Counter = Counter()
    _, clean_records = asyncio.run(ingest_round([*clean], clean_counts))
    counts: Counter = Counter()
    kinds: Counter = Counter()
    ours = plain = 0.0
    messages = mutants = rounds = changed = 0
    while mutants < n_mutants:
        mixed = list(mixed_session(clean, rate, seed=rounds))
        made = [m for m in mixed if isinstance(m, Mutant)]
        kinds.update(m.kind for m in made)
        elapsed, records = asyncio.run(ingest_round(mixed, counts))
        changed += records != clean_records
        ours += elapsed
        plain += plain_json([m.message if isinstance(m, Mutant) else m for m in mixed])
        messages += len(mixed)
        mutants += len(made)
        rounds += 1
    invalid = sum(n for kind, n in kinds.items() if kind not in HARMLESS)
    return {
        "messages": messages,
        "mutants": mutants,
        "invalid_mutants": invalid,
        "harmless_mutants": mutants - invalid,
        "dead_letters": counts["dead_letters"],
        "accepted_invalid": counts["accepted_invalid"],
        "rejected_valid": counts["rejected_valid"],
        "crashes": counts["crashes"],
        "rounds": rounds,
        "rounds_with_changed_records": changed,
        "clean_session_dead_letters": clean_counts["dead_letters"],
        "dead_letters_by_class": {
            k.removeprefix("class:"): n for k, n in sorted(counts.items()) if k.startswith("class:")
        },
        "mutants_by_kind": dict(sorted(kinds.items())),
        "messages_per_s": messages / ours,
        "plain_json_messages_per_s": messages / plain,
        "ratio_vs_plain_json": plain / ours,
        "ok": counts["accepted_invalid"] == counts["rejected_valid"] == counts["crashes"] == 0
        and changed == 0
        and counts["dead_letters"] == invalid,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (default)")
    parser.add_argument("--mutants", type=int, default=100_000)
    parser.add_argument("--instruments", type=int, default=3_000)
    parser.add_argument("--duration", type=float, default=30.0, help="simulated seconds")
    parser.add_argument("--rate", type=float, default=0.3, help="share of notifications mutated")
    args = parser.parse_args()
    try:
        result = run(args.mutants, args.instruments, args.duration, args.rate)
    except ConfigError as exc:  # a bad size: one line, not a traceback
        parser.exit(2, f"fuzz_ingest.py: error: {exc}\n")
    print(json.dumps(result, indent=None if args.json else 2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
