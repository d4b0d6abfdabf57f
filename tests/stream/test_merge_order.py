"""One producer's records are released in the order it sent them, whatever the broker's
per-topic delays and the fetch splits: live equals a replay of the finished log."""

from __future__ import annotations

import random

from aiokafka.structs import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.stream.merge import EventTimeMerge, InputItem

TOPICS = ("md.options.v1", "md.underlying.v1", "md.trades.v1")
TPS = [TopicPartition(topic, 0) for topic in TOPICS]


def sent(slots: list[int], stamps: list[int]) -> list[InputItem]:
    """Records in send order, each with its md-order counts (its producer's records before
    it per topic); event times jitter, so send order is not event-time order."""
    counts = [0] * len(TOPICS)
    out = []
    for slot, ts in zip(slots, stamps, strict=False):
        out.append(InputItem(TPS[slot], counts[slot], ts, None, "p1", tuple(counts)))
        counts[slot] += 1
    return out


def live(records: list[InputItem], rng: random.Random) -> list[InputItem]:
    """Each topic's records reach the log at their own pace; fetches of random sizes."""
    logs: dict[TopicPartition, list[InputItem]] = {tp: [] for tp in TPS}
    fetched = dict.fromkeys(TPS, 0)
    merge = EventTimeMerge(TPS, clock=lambda: 0.0)
    out: list[InputItem] = []
    pending = list(records)
    while pending or any(fetched[tp] < len(logs[tp]) for tp in TPS) or merge.buffered():
        if pending and rng.random() < 0.6:  # the broker appends some sent records
            for item in pending[: rng.randint(1, 3)]:
                if rng.random() < 0.7 or item is pending[0]:
                    logs[item.tp].append(item)
                    pending.remove(item)
        tp = rng.choice(TPS)
        n = rng.randint(0, 4)
        merge.push(tp, logs[tp][fetched[tp] : fetched[tp] + n])
        fetched[tp] = min(fetched[tp] + n, len(logs[tp]))
        out.extend(merge.release(lambda t: fetched[t] >= len(logs[t])))
    assert merge.gaps == 0 and merge.forced == 0
    return out


@settings(max_examples=150, deadline=None)
@given(
    slots=st.lists(st.integers(0, len(TOPICS) - 1), max_size=40),
    stamps=st.lists(st.integers(0, 30), min_size=40, max_size=40),
    seed=st.integers(0, 10_000),
)
def test_live_release_is_send_order_whatever_the_delays(slots, stamps, seed) -> None:
    records = sent(slots, stamps)
    got = live(records, random.Random(seed))
    assert [(i.tp.topic, i.offset) for i in got] == [(i.tp.topic, i.offset) for i in records]


def test_a_record_lost_on_a_topic_is_waited_for_then_given_up() -> None:
    now = [0.0]
    merge = EventTimeMerge(TPS[:2], max_idle_s=0.5, clock=lambda: now[0])
    options, index = TPS[0], TPS[1]
    merge.push(index, [InputItem(index, 0, 5, None, "p1", (1, 0, 0))])  # after option 0
    assert list(merge.release(lambda tp: True)) == []
    now[0] = 0.6
    assert [i.offset for i in merge.release(lambda tp: True)] == [0]
    assert merge.gaps == 1
    # A record absent on its own partition (retention, a lost batch) is not waited for.
    merge.push(options, [InputItem(options, 0, 1, None, "p1", (7, 1, 0))])
    assert [i.tp for i in merge.release(lambda tp: True)] == [options]


def test_the_order_state_carries_over_a_restore() -> None:
    options, index = TPS[0], TPS[1]
    first = EventTimeMerge(TPS[:2])
    first.push(options, [InputItem(options, 0, 9, None, "p1", (0, 0, 0))])
    assert len(list(first.release(lambda tp: True))) == 1
    second = EventTimeMerge(TPS[:2])
    second.restore_order(first.order_state())
    # The index tick was sent after option 0 (released before the restore), the next
    # option after the index tick: send order, although the option's time is earlier.
    second.push(options, [InputItem(options, 1, 1, None, "p1", (1, 1, 0))])
    second.push(index, [InputItem(index, 0, 3, None, "p1", (1, 0, 0))])
    assert [i.tp for i in second.release(lambda tp: True)] == [index, options]
    assert first.order_state() == {"p1": [1, 0]}


def test_each_awaited_record_gets_the_whole_wait_of_its_own() -> None:
    """The wait for a record not seen yet starts when the merge stops progressing: a second
    gap is not cut short by the time an earlier, filled one took."""
    now = [0.0]
    merge = EventTimeMerge(TPS[:2], max_idle_s=10.0, clock=lambda: now[0])
    options, index = TPS[0], TPS[1]
    merge.push(index, [InputItem(index, 0, 5, None, "p1", (1, 0, 0))])  # after option 0
    assert list(merge.release(lambda tp: True)) == []
    now[0] = 5.0  # option 0 comes; index 1 (after option 1, still in flight) is held
    merge.push(options, [InputItem(options, 0, 1, None, "p1", (0, 0, 0))])
    merge.push(index, [InputItem(index, 1, 6, None, "p1", (2, 1, 0))])
    merge.push(options, [])
    assert [(i.tp, i.offset) for i in merge.release(lambda tp: True)] == [(options, 0), (index, 0)]
    now[0] = 11.0  # option 1 awaited for 6 s only
    assert list(merge.release(lambda tp: True)) == []
    now[0] = 12.0
    merge.push(options, [InputItem(options, 1, 2, None, "p1", (1, 1, 0))])
    assert [(i.tp, i.offset) for i in merge.release(lambda tp: True)] == [(options, 1), (index, 1)]
    assert merge.gaps == 0 and merge.forced == 0
