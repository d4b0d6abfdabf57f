"""Applying polled chain deltas and ticker packs to a :class:`engine.core.book.GammaBook`."""

from __future__ import annotations

import math
from decimal import Decimal
from operator import itemgetter

import numpy as np

from engine.core import kernels as k
from engine.core.models import DEALER_MODELS
from schemas.chain import CHAIN_COLUMNS, TERM_COLUMNS, VALUE_COLUMNS, ChainDelta
from schemas.domain import column_problem
from schemas.ticks import FLOAT_COLUMNS, OptionTicks


def store_last(row: np.ndarray, slots: np.ndarray, values: np.ndarray) -> None:
    """``row[slots] = values`` where a slot listed twice takes its last value (in order, as
    the quote batches apply)."""
    last, index = np.unique(slots[::-1], return_index=True)
    row[last] = values[::-1][index]


class ChainUpdates:
    """The book's chain-delta and ticker-pack paths (a base of GammaBook: its slots, its
    kernels' arrays)."""

    def apply_delta(self, delta: ChainDelta) -> int:
        """Apply one part of a polled chain snapshot: drop ``removed``, upsert the columns.

        The columns are checked before anything changes (ValueError names the problem, a
        value out of its domain by field and value: ``schemas.domain``), new
        contracts are allocated in bulk and the quotes go to the kernel as arrays; when the
        part updates more than half of the book, a full rebuild is cheaper than retracting
        and re-adding each contribution. Returns the number of contracts upserted.
        """
        columns = delta.columns
        n, with_terms = _checked_length(columns)
        instruments = columns["instrument"]
        # A part of known contracts carries only the value columns that changed somewhere;
        # an absent column keeps each slot's current value.
        given = {
            name: _floats(columns[name], name) if name in columns else None
            for name in VALUE_COLUMNS
        }
        _check_domain(given, columns, instruments)  # before anything changes
        if delta.removed:
            self.remove_many(delta.removed)
        self.ts_event_ns = max(self.ts_event_ns, int(delta.ts_event_ns))
        if n == 0:
            return 0
        slots = self._slots_of(instruments, columns, with_terms)
        # Updates of contracts this book has never seen, without their terms (the engine
        # joined mid-stream), wait for the next full snapshot.
        names = [name for name in VALUE_COLUMNS if given[name] is not None]
        slots, instruments, kept = self._known_only(
            slots, instruments, [given[name] for name in names]
        )
        given.update(zip(names, kept, strict=True))
        n = len(slots)
        if n == 0:
            return 0
        f = self.slot_f
        iv = given["iv"] if given["iv"] is not None else f[k.F_IV, slots]
        gamma = given["gamma"] if given["gamma"] is not None else f[k.F_VENUE_GAMMA, slots]
        open_interest = given["open_interest"]
        if open_interest is None:
            position = f[k.F_POSITION, slots]
        else:
            position = self._dealer_positions(slots, instruments, open_interest)
        forward = given["underlying_price"]
        if forward is None:
            basis = f[k.F_BASIS, slots]
        elif self.config.use_forwards and delta.spot > 0:
            basis = np.where(np.isfinite(forward) & (forward > 0), forward / delta.spot, 1.0)
        else:
            basis = np.ones(n)
        if open_interest is not None:
            store_last(f[k.F_OI], slots, open_interest)
        if self._profile_stale or 10 * delta.upserts > 3 * self.n_contracts:
            # Most of the book changes: store the quotes and rebuild once the snapshot is
            # complete (~3x cheaper than retracting and re-adding each contribution). The
            # derived parameters the profile was built from stay until then, so an
            # incremental update in between still retracts exactly what it added.
            f[k.F_IV, slots] = iv
            f[k.F_POSITION, slots] = position
            f[k.F_BASIS, slots] = basis
            f[k.F_VENUE_GAMMA, slots] = gamma
            self._profile_stale = True
        else:
            k.apply_quotes(
                self.profile, self.log_s, self.log_step, self.slot_f, self.slot_i,
                slots, iv, position, basis, gamma,
            )  # fmt: skip
        if self._buckets_dirty:
            self._refresh_buckets_and_rebuild()
        elif self._profile_stale and delta.last:
            self.rebuild()
        return n

    def apply_ticks(self, ticks: OptionTicks) -> int:
        """Apply a pack of ticker updates in one kernel call (in order, as ``upsert`` would).

        Ticks of instruments this book has no slot for (their terms never came) are skipped
        and counted in ``skipped_unknown``. Returns the number of ticks applied.
        """
        if ticks.underlying != self.underlying:
            raise ValueError(f"ticks of {ticks.underlying} cannot go to the {self.underlying} book")
        for name in FLOAT_COLUMNS:  # every value checked before anything changes
            # a tick always has its forward (NaN there is no "none")
            nan_ok = False if name == "underlying_price" else None
            problem = column_problem(name, getattr(ticks, name), ticks.instrument, nan_ok)
            if problem is not None:
                raise ValueError(problem)
        self.ts_event_ns = max(self.ts_event_ns, int(ticks.ts_event_ns))
        slots, instruments, (iv, open_interest, gamma, forward, index) = self._known_only(
            self._slots_of(ticks.instrument, {}, with_terms=False),
            ticks.instrument,
            [ticks.iv, ticks.open_interest, ticks.gamma, ticks.underlying_price, ticks.index_price],
        )
        n = len(slots)
        if n == 0:
            return 0
        position = self._dealer_positions(slots, instruments, open_interest)
        store_last(self.slot_f[k.F_OI], slots, np.asarray(open_interest, dtype=np.float64))
        if self.config.use_forwards:  # as _basis: 1 where the index is missing or zero
            usable = np.isfinite(index) & (index != 0)
            basis = np.where(usable, forward / np.where(usable, index, 1.0), 1.0)
        else:
            basis = np.ones(n)
        k.apply_quotes(
            self.profile, self.log_s, self.log_step, self.slot_f, self.slot_i,
            slots, np.array(iv), position, basis, np.array(gamma),
        )  # fmt: skip
        return n

    def _known_only(
        self, slots: np.ndarray, instruments: list[str], columns: list[np.ndarray]
    ) -> tuple[np.ndarray, list[str], list[np.ndarray]]:
        """Drop the rows of instruments without a slot (counted in ``skipped_unknown``)."""
        known = slots >= 0
        if known.all():
            return slots, instruments, columns
        self.skipped_unknown += int((~known).sum())
        kept = [name for name, ok in zip(instruments, known, strict=True) if ok]
        return slots[known], kept, [column[known] for column in columns]

    def _dealer_positions(
        self, slots: np.ndarray, instruments: list[str], open_interest: np.ndarray
    ) -> np.ndarray:
        """Signed dealer positions of slots under the book's model (the array form of
        :meth:`_position`; the flow model's inventory is per instrument, in order)."""
        is_call = self.slot_i[k.I_IS_CALL, slots] == 1
        if self.flow is not None:
            return np.array(
                [
                    self.flow.position(name, bool(call), float(oi))
                    for name, call, oi in zip(instruments, is_call, open_interest, strict=True)
                ]
            )
        call_sign, put_sign = DEALER_MODELS[self.config.model]
        return np.where(is_call, call_sign, put_sign) * open_interest

    def _slots_of(
        self, instruments: list[str], columns: dict[str, list], with_terms: bool
    ) -> np.ndarray:
        """Slots of a part's instruments, allocating the new ones when their terms came along
        (-1 for unknown instruments without terms)."""
        try:  # the usual case, every instrument known: one C-level lookup of them all
            found = itemgetter(*instruments)(self.instrument_slot)
            return np.array(found if len(instruments) > 1 else [found], dtype=np.int64)
        except KeyError:
            pass
        get = self.instrument_slot.get
        slots = np.fromiter((get(name, -1) for name in instruments), np.int64, len(instruments))
        new_rows = np.flatnonzero(slots < 0)
        if len(new_rows) and with_terms:
            slots[new_rows] = self._allocate_rows(columns, new_rows)
        return slots

    def _allocate_rows(self, columns: dict[str, list], rows: np.ndarray) -> np.ndarray:
        """Slots for new contracts (rows of the columns), terms checked first, then written."""
        count = len(rows)
        picked = rows.tolist()
        names = [columns["instrument"][j] for j in picked]
        rights = [columns["right"][j] for j in picked]
        if not set(rights) <= {"C", "P"}:
            raise ValueError(f"right must be 'C' or 'P', got {sorted(set(rights))}")
        if len(set(names)) != count:
            raise ValueError("an instrument appears twice in one part")
        try:
            expiry = np.asarray(columns["expiry_ns"], dtype=np.int64)[rows]
        except (TypeError, ValueError, OverflowError):
            raise ValueError("column expiry_ns holds a value that is not an integer") from None
        multiplier = _floats(columns["multiplier"], "multiplier")[rows]
        if not (np.isfinite(multiplier) & (multiplier > 0)).all():
            raise ValueError("multiplier must be positive")
        strike_texts = [columns["strike"][j] for j in picked]
        strike_idx = np.fromiter(
            (self._strike_slot(text) for text in strike_texts), np.int64, count
        )
        free = self._free
        take = min(len(free), count)
        slots = np.empty(count, dtype=np.int64)
        slots[:take] = [free.pop() for _ in range(take)]
        while self.n_slots + count - take > self.slot_f.shape[1]:
            self._grow_slots()
        slots[take:] = np.arange(self.n_slots, self.n_slots + count - take)
        self.n_slots += count - take
        expiry_idx = np.fromiter(
            (self.expiry_index.setdefault(e, len(self.expiry_index)) for e in expiry.tolist()),
            np.int64,
            count,
        )
        f, i = self.slot_f, self.slot_i
        f[:, slots] = math.nan
        f[k.F_STRIKE, slots] = self.strike_values[strike_idx]
        f[k.F_MULTIPLIER, slots] = multiplier
        f[k.F_TAU, slots] = self._tau_of(expiry, self.t_ref_ns)
        i[:, slots] = 0
        i[k.I_STATE, slots] = k.SLOT_PRESENT
        i[k.I_IS_CALL, slots] = [1 if r == "C" else 0 for r in rights]
        i[k.I_STRIKE_IDX, slots] = strike_idx
        i[k.I_EXPIRY_IDX, slots] = expiry_idx
        self.slot_expiry_ns[slots] = expiry
        for slot, name in zip(slots.tolist(), names, strict=True):
            self.slot_instrument[slot] = name
            self.instrument_slot[name] = slot
        alive = expiry > self.t_ref_ns
        if alive.any():
            nearest = int(expiry[alive].min())
            if self.front_expiry_ns is None or nearest < self.front_expiry_ns:
                self.front_expiry_ns = nearest
                self._buckets_dirty = True  # every slot's front bit changes: redone after
        bits = np.where(alive, k.BUCKET_ALL, 0)
        bits |= np.where(alive & (expiry <= self.session_end_ns), k.BUCKET_0DTE, 0)
        if self.front_expiry_ns is not None:
            bits |= np.where(alive & (expiry == self.front_expiry_ns), k.BUCKET_FRONT, 0)
        i[k.I_BUCKETS, slots] = bits
        return slots

    def _strike_slot(self, text: str) -> int:
        try:
            strike = Decimal(text)
        except (ArithmeticError, TypeError, ValueError):
            raise ValueError(f"bad strike {text!r}") from None
        if not (strike.is_finite() and strike > 0):
            raise ValueError(f"strike must be positive, got {text!r}")
        idx = self.strike_index.get(strike)
        if idx is None:
            idx = len(self.strike_index)
            if idx == self.strike_values.shape[0]:
                self._grow_strikes()
            self.strike_index[strike] = idx
            self.strike_values[idx] = float(strike)
        return idx


def _checked_length(columns: dict[str, list]) -> tuple[int, bool]:
    """(rows, whether the term columns came along); ValueError for a malformed set."""
    terms = [name for name in TERM_COLUMNS if name != "instrument"]
    with_terms = any(name in columns for name in terms)
    unknown = sorted(set(columns) - set(CHAIN_COLUMNS))
    if unknown:
        raise ValueError(f"chain delta has unknown columns {unknown}")
    # Without terms (known contracts) the value columns may be a subset: the changed ones.
    wanted = CHAIN_COLUMNS if with_terms else ("instrument",)
    missing = [name for name in wanted if name not in columns]
    if missing:
        raise ValueError(f"chain delta lacks columns {missing}")
    wanted = tuple(name for name in CHAIN_COLUMNS if name in columns)
    lengths = {len(columns[name]) for name in wanted}
    if len(lengths) != 1:
        raise ValueError(f"chain delta columns differ in length: {sorted(lengths)}")
    return lengths.pop(), with_terms


def _floats(values: list, name: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)  # JSON null → NaN
    except (TypeError, ValueError):
        raise ValueError(f"column {name} holds a value that is not a number") from None


def _check_domain(
    given: dict[str, np.ndarray | None], columns: dict[str, list], instruments
) -> None:
    """ValueError naming the first value of a delta outside its domain (schemas.domain)."""
    arrays = dict(given)
    if "multiplier" in columns:
        arrays["multiplier"] = _floats(columns["multiplier"], "multiplier")
    for name, values in arrays.items():
        if values is not None:
            problem = column_problem(name, values, instruments)
            if problem is not None:
                raise ValueError(problem)
