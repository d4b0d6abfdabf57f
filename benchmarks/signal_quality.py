"""Event quality on seeded simulator sessions: recall, duplicates, false events, delay.

Each session (BTC; several sizes, seeds and index paths: the scripted sell-off through zero
gamma and the put wall, a rally through the call wall, or a free dealer-feedback walk) goes
through the Deribit parse path (``IngestStage`` into memory, no broker) and one engine task
(``PartitionTask``, the runtime's apply/evaluate step) in event-time order. The simulator
records when its index truly crossed zero gamma and the walls of the all-expiries book;
``engine.signals.quality`` matches the events against those crossings.

Reported, with the defaults (``after``) and as before (``before``: ``[levels] wall_rule =
"global"``, one level-shift threshold for every bucket, and every bucket's copy of an event
counted, as when each bucket published its own):

- per event type in ``all``: true crossings, events, detected, recall, events and duplicates
  per crossing, false events per hour, detection delay p50 / p99 (event time);
- per bucket and type: events and events per hour;
- a sweep of the detector's band, dwell and level-shift threshold over the same levels.

``python benchmarks/signal_quality.py --json`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka.structs import TopicPartition

from connectors.common.ingest import IngestStage, MemorySink, replay_capture
from connectors.deribit.normaliser import DeribitNormaliser
from connectors.simulator.deribit_session import SessionConfig, write_session
from engine.core.config import LevelsConfig
from engine.signals.detector import DetectorConfig, RegimeDetector, Trigger
from engine.signals.quality import EVENT_OF_LEVEL, TrueCrossing, TypeScore, score
from engine.stream.merge import InputItem
from engine.stream.task import PartitionTask, TaskConfig
from schemas.events import RegimeEvent
from schemas.levels import BUCKETS, Levels
from schemas.topics import Topics

LEVEL_EVENTS = (*EVENT_OF_LEVEL.values(), "level_shift", "wall_reject", "regime_change")
SWEEP_BANDS = (5.0, 10.0, 20.0)
SWEEP_DWELLS = (1.0, 3.0, 6.0)
SWEEP_SHIFTS = (50.0, 100.0, 200.0)
BEFORE = DetectorConfig(level_shift_bps_by_bucket=())  # one level-shift threshold for all


class _Recorder(RegimeDetector):
    """The default detector, also keeping every evaluation's input (for the sweep)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.inputs: list[tuple[Levels, Trigger, dict[str, float] | None]] = []

    def evaluate(self, levels, trigger, feed_ages_s=None):  # type: ignore[no-untyped-def]
        self.inputs.append((levels, trigger, dict(feed_ages_s or {})))
        return super().evaluate(levels, trigger, feed_ages_s)


def session_records(config: SessionConfig, directory: Path) -> tuple[list[Any], Any]:
    """(every record of the session in event-time order as (topic, record), its summary)."""
    path = directory / f"session-{config.seed}-{config.n_instruments}-{config.scenario}.jsonl"
    summary = write_session(config, path)
    sink = MemorySink()
    stage = IngestStage("deribit", DeribitNormaliser(), sink, Topics(), source="replay")
    asyncio.run(replay_capture(path, stage))
    path.unlink()
    return sorted(sink.records, key=lambda tr: tr[1].ts_event_ns), summary


def run_engine(records: list[Any], levels_config: LevelsConfig) -> _Recorder:
    """One engine task over the records; its detector holds the events' inputs."""
    task = PartitionTask(0, None, levels_config, DetectorConfig(), TaskConfig(), lambda: 0)  # type: ignore[arg-type]
    detector = _Recorder(
        "BTC", DetectorConfig(), lambda: 0, transition_band_bps=levels_config.transition_band_bps
    )
    task.detectors["BTC"] = detector
    offsets: Counter[str] = Counter()
    items = []
    for topic, record in records:
        items.append(
            InputItem(TopicPartition(topic, 0), offsets[topic], record.ts_event_ns, record)
        )
        offsets[topic] += 1
    task.process(items)
    return detector


def replay_detector(
    inputs: list[tuple[Levels, Trigger, dict[str, float] | None]], config: DetectorConfig
) -> list[RegimeEvent]:
    detector = RegimeDetector("BTC", config, lambda: 0)
    out: list[RegimeEvent] = []
    for levels, trigger, ages in inputs:
        out.extend(detector.evaluate(levels, trigger, ages))
    return out


def per_bucket(events: list[RegimeEvent], expand: bool) -> dict[str, Counter[str]]:
    """Events per bucket and type; ``expand``: an event standing for several buckets counts
    once in each (what publishing every bucket's copy gave)."""
    out = {b: Counter() for b in BUCKETS}
    for e in events:
        for b in e.buckets if expand else (e.bucket,):
            out[b][e.type] += 1
    return out


def sessions(count: int, sizes: list[int], duration: float) -> list[SessionConfig]:
    out = []
    for i in range(count):
        out.append(
            SessionConfig(
                currency="BTC",
                n_instruments=sizes[i % len(sizes)],
                duration_s=duration,
                seed=100 + i,
                scenario=("flip_and_wall", "call_wall", "none")[i % 3],
            )
        )
    return out


def _crossings(summary: Any) -> list[TrueCrossing]:
    return [TrueCrossing(c.ts_ns, c.level, c.direction, c.price) for c in summary.crossings]


def _scores(events, crossings, totals: dict[str, TypeScore]) -> None:  # type: ignore[no-untyped-def]
    for event_type, s in score(events, crossings).items():
        totals.setdefault(event_type, TypeScore()).add(s)


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    configs = sessions(args.sessions, args.instruments, args.duration)
    hours = sum(c.duration_s for c in configs) / 3600.0
    after: dict[str, TypeScore] = {}
    before: dict[str, TypeScore] = {}
    buckets_after = {b: Counter() for b in BUCKETS}
    buckets_before = {b: Counter() for b in BUCKETS}
    sweep: dict[tuple[float, float], dict[str, TypeScore]] = {}
    shifts: dict[float, dict[str, int]] = {s: Counter() for s in SWEEP_SHIFTS}
    side = LevelsConfig()
    with tempfile.TemporaryDirectory() as tmp:
        for n, config in enumerate(configs):
            records, summary = session_records(config, Path(tmp))
            crossings = _crossings(summary)
            new = run_engine(records, side)
            events = replay_detector(new.inputs, DetectorConfig())
            _scores(events, crossings, after)
            for b, counts in per_bucket(events, expand=False).items():
                buckets_after[b].update(counts)
            old = run_engine(records, replace(side, wall_rule="global"))
            old_events = replay_detector(old.inputs, BEFORE)
            _scores(old_events, crossings, before)
            for b, counts in per_bucket(old_events, expand=True).items():
                buckets_before[b].update(counts)
            for band in SWEEP_BANDS:
                for dwell in SWEEP_DWELLS:
                    cfg = DetectorConfig(band_bps=band, dwell_s=dwell)
                    _scores(
                        replay_detector(new.inputs, cfg),
                        crossings,
                        sweep.setdefault((band, dwell), {}),
                    )
            for threshold in SWEEP_SHIFTS:
                cfg = DetectorConfig(level_shift_bps=threshold, level_shift_bps_by_bucket=())
                for e in replay_detector(new.inputs, cfg):
                    if e.type == "level_shift":
                        shifts[threshold][e.bucket] += 1
            print(f"session {n + 1}/{len(configs)} done", file=sys.stderr)
    types = tuple(EVENT_OF_LEVEL.values())
    return {
        "sessions": len(configs),
        "session_hours": round(hours, 4),
        "instruments": args.instruments,
        "duration_s": args.duration,
        "after": {t: after[t].summary(hours) for t in types},
        "before": {t: before[t].summary(hours) for t in types},
        "events_per_bucket_after": {b: dict(c) for b, c in buckets_after.items()},
        "events_per_bucket_before": {b: dict(c) for b, c in buckets_before.items()},
        "events_per_hour_after": {
            b: round(sum(c.values()) / hours, 1) for b, c in buckets_after.items()
        },
        "events_per_hour_before": {
            b: round(sum(c.values()) / hours, 1) for b, c in buckets_before.items()
        },
        "sweep_band_dwell": [
            {
                "band_bps": band,
                "dwell_s": dwell,
                **{
                    t: {
                        k: v[t].summary(hours)[k]
                        for k in (
                            "recall",
                            "events_per_crossing",
                            "false_events_per_hour",
                            "delay_s_p50",
                        )
                    }
                    for t in types
                },
            }
            for (band, dwell), v in sweep.items()
        ],
        "sweep_level_shift_per_hour": [
            {"level_shift_bps": s, **{b: round(shifts[s][b] / hours, 1) for b in BUCKETS}}
            for s in SWEEP_SHIFTS
        ],
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--sessions", type=int, default=24)
    parser.add_argument("--instruments", type=int, nargs="+", default=[300, 600, 1000])
    parser.add_argument("--duration", type=float, default=300.0, help="simulated seconds")
    args = parser.parse_args()
    if args.sessions < 1:
        parser.error("--sessions must be >= 1")
    result = run(args)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
