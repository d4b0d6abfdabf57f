"""Polled chain snapshots → ``ChainDelta`` records: what changed since the previous snapshot.

Venues that publish whole chains (CBOE delayed quotes, CME settlements) are polled; each
snapshot is compared with the previous one of the same venue and underlying, as arrays,
and only the contracts added or changed (in the columns dealer gamma depends on) and the
instruments removed travel to Kafka. The first snapshot after a start, and every
``keyframe_every``-th one after it, is sent ``full`` so that an engine drops contracts that
vanished while a connector was down. Parts are cut so that no record exceeds
``max_record_bytes`` (below the broker's ``message.max.bytes``, 1 MB by default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np

from connectors.common.errors import ParseError
from schemas.chain import CHAIN_COLUMNS, TERM_COLUMNS, VALUE_COLUMNS, ChainColumns, ChainDelta


@dataclass(frozen=True, slots=True)
class SnapshotFramingConfig:
    """How snapshots are cut into ChainDelta parts."""

    max_record_bytes: int = 900_000  # per encoded record; Kafka's default limit is 1,048,588
    keyframe_every: int = 20  # every n-th snapshot is sent full (1: always full)

    def __post_init__(self) -> None:
        if self.max_record_bytes < 10_000:
            raise ValueError("max_record_bytes must be at least 10,000")
        if self.keyframe_every < 1:
            raise ValueError("keyframe_every must be positive")


@dataclass(slots=True)
class _Previous:
    instruments: list[str]
    index: dict[str, int]  # instrument → row of ``values``
    values: np.ndarray  # (rows, len(VALUE_COLUMNS)) float64
    row_bytes: tuple[int, int]  # encoded size bound of one row with / without its terms
    asof_ns: int
    spot: float


@dataclass(slots=True)
class SnapshotDiff:
    """Rows of a snapshot to send, and the instruments that left since the previous one."""

    upserts: np.ndarray  # int64 rows of the snapshot: added or changed
    removed: list[str]
    full: bool
    row_bytes: tuple[int, int]  # encoded size bound of a row with / without its terms
    new_rows: np.ndarray  # rows the previous snapshot did not list
    changed_columns: tuple[str, ...]  # value columns that changed in some known contract


@dataclass
class SnapshotDiffer:
    """Keeps the previous snapshot per (venue, underlying) and frames each new one."""

    config: SnapshotFramingConfig = field(default_factory=SnapshotFramingConfig)
    _previous: dict[tuple[str, str], _Previous] = field(default_factory=dict)
    _since_keyframe: dict[tuple[str, str], int] = field(default_factory=dict)

    def diff(self, snapshot: ChainColumns) -> SnapshotDiff | None:
        """Compare with the previous snapshot and remember this one (None: same document)."""
        key = (snapshot.venue, snapshot.underlying)
        values = _values(snapshot)
        previous = self._previous.get(key)
        same_listing = previous is not None and previous.instruments == snapshot.instrument
        index = previous.index if same_listing else _unique_index(snapshot.instrument)
        if (
            previous is not None
            and previous.asof_ns == snapshot.asof_ns
            and previous.spot == snapshot.spot
            and same_listing
            and _same(previous.values, values).all()
        ):
            return None  # the venue served the same snapshot again
        count = self._since_keyframe.get(key, self.config.keyframe_every)
        full = previous is None or count >= self.config.keyframe_every
        self._since_keyframe[key] = 1 if full else count + 1
        row_bytes = previous.row_bytes if same_listing else _row_bytes(snapshot)
        self._previous[key] = _Previous(
            snapshot.instrument, index, values, row_bytes, snapshot.asof_ns, snapshot.spot
        )
        if previous is None:
            rows = np.arange(len(snapshot), dtype=np.int64)
            return SnapshotDiff(rows, [], full, row_bytes, rows, VALUE_COLUMNS)
        if same_listing:  # the usual case: the same contracts in the same order
            same = _same(previous.values, values)
            send = np.ones(len(snapshot), dtype=bool) if full else ~same.all(axis=1)
            return SnapshotDiff(np.flatnonzero(send), [], full, row_bytes, _NO_ROWS, _changed(same))
        old_rows = np.fromiter(
            (previous.index.get(name, -1) for name in snapshot.instrument),
            dtype=np.int64,
            count=len(snapshot),
        )
        is_new = old_rows < 0
        unchanged = np.zeros(len(snapshot), dtype=bool)
        known = ~is_new
        same = _same(previous.values[old_rows[known]], values[known])
        unchanged[known] = same.all(axis=1)
        send = np.ones(len(snapshot), dtype=bool) if full else ~unchanged
        removed = [name for name in previous.index if name not in index]
        new_rows = np.flatnonzero(is_new)
        return SnapshotDiff(
            np.flatnonzero(send), removed, full, row_bytes, new_rows, _changed(same)
        )

    def frame(self, snapshot: ChainColumns, recv_ns: int) -> list[ChainDelta]:
        """The ChainDelta parts of a snapshot, in order (empty when nothing is new at all)."""
        diff = self.diff(snapshot)
        if diff is None:
            return []
        return cut_parts(snapshot, diff, recv_ns, self.config)

    def forget(self, venue: str, underlying: str) -> None:
        """Drop the remembered snapshot: the next one is sent full."""
        self._previous.pop((venue, underlying), None)
        self._since_keyframe.pop((venue, underlying), None)


def _values(snapshot: ChainColumns) -> np.ndarray:
    return np.column_stack([getattr(snapshot, name) for name in VALUE_COLUMNS])


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a == b) | (np.isnan(a) & np.isnan(b))


def _changed(same: np.ndarray) -> tuple[str, ...]:
    """The value columns in which some row differs (``same``: rows × VALUE_COLUMNS)."""
    differs = ~same.all(axis=0)
    return tuple(name for name, changed in zip(VALUE_COLUMNS, differs, strict=True) if changed)


def _unique_index(instruments: list[str]) -> dict[str, int]:
    index = {name: row for row, name in enumerate(instruments)}
    if len(index) != len(instruments):
        seen: set[str] = set()
        twice = next(name for name in instruments if name in seen or seen.add(name))
        raise ParseError(f"instrument {twice} appears twice in one snapshot")
    return index


def cut_parts(
    snapshot: ChainColumns, diff: SnapshotDiff, recv_ns: int, config: SnapshotFramingConfig
) -> list[ChainDelta]:
    """Cut a diff into parts whose encoded size is bounded by ``max_record_bytes``.

    The bound is computed, not measured (see :func:`_row_bytes`; instrument ids, roots and
    strikes are plain ASCII); the removed instruments travel in their own leading parts.
    """
    budget = config.max_record_bytes - _HEADER_BYTES
    pieces: list[tuple[np.ndarray, list[str], bool]] = []
    if diff.removed:
        cost = np.fromiter((len(name) + 3 for name in diff.removed), np.int64, len(diff.removed))
        for start, stop in _cuts(cost, budget):
            pieces.append((diff.upserts[:0], diff.removed[start:stop], False))
    rows = diff.upserts
    # Rows the previous snapshot did not list carry their terms; known rows carry only the
    # instrument and the value columns that changed somewhere (a full snapshot carries every
    # column for every row).
    if diff.full or len(diff.new_rows) == len(rows):
        groups = [(rows, True)]
    else:
        new = np.zeros(len(snapshot), dtype=bool)
        new[diff.new_rows] = True
        groups = [(rows[new[rows]], True), (rows[~new[rows]], False)]
    for group, with_terms in groups:
        row_bytes = diff.row_bytes[0] if with_terms else diff.row_bytes[1]
        per_part = max(1, budget // row_bytes)
        for start in range(0, len(group), per_part):
            pieces.append((group[start : start + per_part], [], with_terms))
    if not pieces:
        pieces.append((rows, [], False))  # nothing changed: one empty part completes it
    return [
        _delta(
            snapshot,
            part_rows,
            gone,
            CHAIN_COLUMNS if with_terms else ("instrument", *diff.changed_columns),
            i,
            len(pieces),
            diff.full,
            len(rows),
            recv_ns,
        )
        for i, (part_rows, gone, with_terms) in enumerate(pieces)
    ]


_NUMBER_BYTES = 11  # a packed number: 8 bytes in base64 (10.7 characters)
_STRING_COLUMNS = tuple(name for name in TERM_COLUMNS if name not in ("expiry_ns", "multiplier"))
_ROW_FIXED_BYTES = _NUMBER_BYTES * (len(CHAIN_COLUMNS) - len(_STRING_COLUMNS))
_HEADER_BYTES = 4_096  # the record's scalar fields and column names
_NO_ROWS = np.zeros(0, dtype=np.int64)


def _row_bytes(snapshot: ChainColumns) -> tuple[int, int]:
    """Encoded size bounds of one row with and without its terms: the longest string of
    each string column plus quotes and a comma, a packed number (base64 of 8 bytes) per
    numeric column."""
    if not len(snapshot):
        return _ROW_FIXED_BYTES, _ROW_FIXED_BYTES
    longest = {name: max(map(len, getattr(snapshot, name))) + 3 for name in _STRING_COLUMNS}
    with_terms = _ROW_FIXED_BYTES + sum(longest.values())
    without = _NUMBER_BYTES * len(VALUE_COLUMNS) + longest["instrument"]
    return with_terms, without


def _cuts(cost: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Consecutive [start, stop) ranges whose summed cost stays within budget."""
    out = []
    start = 0
    total = np.cumsum(cost)
    while start < len(cost):
        base = total[start - 1] if start else 0
        stop = int(np.searchsorted(total, base + budget, side="right"))
        if stop <= start:
            raise ParseError(f"one item costs {int(cost[start])} bytes, over the record budget")
        out.append((start, stop))
        start = stop
    return out


def _delta(
    snapshot: ChainColumns,
    rows: np.ndarray,
    removed: list[str],
    names: tuple[str, ...],
    part: int,
    parts: int,
    full: bool,
    upserts: int,
    recv_ns: int,
) -> ChainDelta:
    columns: dict[str, Any] = {}
    for name in names:
        column = getattr(snapshot, name)
        if isinstance(column, np.ndarray):
            columns[name] = column[rows]  # orjson writes numpy arrays natively (NaN → null)
        elif len(rows) == 1:
            columns[name] = [column[int(rows[0])]]
        elif len(rows):
            columns[name] = list(itemgetter(*rows.tolist())(column))
        else:
            columns[name] = []
    return ChainDelta(
        venue=snapshot.venue,
        underlying=snapshot.underlying,
        snapshot_ns=snapshot.asof_ns,
        part=part,
        parts=parts,
        full=full,
        upserts=upserts,
        spot=snapshot.spot,
        premium_currency=snapshot.premium_currency,
        removed=removed,
        columns=columns,
        ts_event_ns=snapshot.asof_ns,
        ts_recv_ns=recv_ns,
    )
