"""Kafka messages of one input partition → merge input items, decoded once.

An undecodable message is never a crash: it becomes an item without a record (its offset
is still processed and committed) and a dead letter with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.structs import ConsumerRecord, TopicPartition

from connectors.common.kafka.producer import read_order_header
from engine.stream.merge import InputItem
from schemas.contracts import OptionContract
from schemas.records import decode_record
from schemas.ticks import OptionTicks


@dataclass(slots=True)
class Decoded:
    """The items of one partition's messages, and what they carry."""

    items: list[InputItem]
    last_ts: int  # event time of the last one (an undecodable one takes its predecessor's)
    updates: int  # normalised updates (a pack counts its ticks)
    option_ticks: int  # option updates among them: a pack's ticks, a whole contract


def decode_messages(
    tp: TopicPartition,
    messages: list[ConsumerRecord],
    last_ts: int,
    dead: list[tuple[ConsumerRecord, str]],
) -> Decoded:
    """Decode ``messages`` of ``tp`` in order; the undecodable ones are appended to ``dead``
    with their reason. ``last_ts`` is the event time of the partition's previous record."""
    items = []
    ticks = updates = 0
    for message in messages:
        try:
            record = decode_record(message.value)
            last_ts = record.ts_event_ns
            kind = type(record)
            if kind is OptionTicks:
                ticks += len(record)
                updates += len(record)
            else:
                updates += 1
                if kind is OptionContract:
                    ticks += 1
        except Exception as exc:  # any failure to decode is bad input, never a crash
            record = None
            dead.append((message, f"undecodable record: {one_line(exc)}"))
        item = InputItem(tp, message.offset, last_ts, record)
        if message.headers and (order := read_order_header(message.headers)) is not None:
            item.producer, item.after = order  # applied in its producer's send order
        items.append(item)
    return Decoded(items, last_ts, updates, ticks)


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (just ``Type`` without a message)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
