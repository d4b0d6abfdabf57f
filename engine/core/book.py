"""Dealer-gamma state of one underlying: contract slots in preallocated arrays, bucket profiles."""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import numba
import numpy as np

from engine.core import kernels as k
from engine.core.book_updates import ChainUpdates, store_last
from engine.core.calendar import TIME_MODELS, session_end_ns
from engine.core.config import LevelsConfig
from engine.core.flow import FlowInventory
from engine.core.models import FLOW_MODEL, dealer_position
from schemas.chain import ChainSnapshot
from schemas.contracts import OptionContract
from schemas.domain import contract_problem, price_problem

BUCKET_BITS = {"all": k.BUCKET_ALL, "0dte": k.BUCKET_0DTE, "front": k.BUCKET_FRONT}
BUCKET_ROWS = {"all": 0, "0dte": 1, "front": 2}
PARALLEL_REBUILD_SLOTS = 4_096  # below this a serial rebuild is as fast (thread start-up)


class GammaBook(ChainUpdates):
    """Contracts of one underlying as slots; the gamma profile of each bucket kept current.

    Slots are rows of ``slot_f`` / ``slot_i`` (see :mod:`engine.core.kernels`), reused after a
    contract is removed; the arrays grow by doubling, so steady-state updates never allocate.
    Times to expiry are fixed at the reference time ``t_ref_ns`` until :meth:`advance_time`.
    """

    def __init__(
        self,
        underlying: str,
        venue: str,
        config: LevelsConfig,
        spot: float,
        t_ref_ns: int,
        capacity: int = 1024,
    ) -> None:
        problem = price_problem("spot", spot)
        if problem is not None:
            raise ValueError(problem)
        self.underlying = underlying
        self.venue = venue
        self.config = config
        self.spot = float(spot)
        self.t_ref_ns = int(t_ref_ns)
        self.ts_event_ns = int(t_ref_ns)
        self._tau_of = TIME_MODELS[config.time_model]
        self.flow = FlowInventory(config.flow_prior_weight) if config.model == FLOW_MODEL else None
        capacity = max(int(capacity), 8)
        self.slot_f = np.zeros((k.N_SLOT_F, capacity))
        self.slot_i = np.zeros((k.N_SLOT_I, capacity), dtype=np.int64)
        self.slot_expiry_ns = np.zeros(capacity, dtype=np.int64)
        self.slot_instrument: list[str | None] = [None] * capacity
        self.instrument_slot: dict[str, int] = {}
        self._free: list[int] = []
        self.n_slots = 0  # high-water mark: slots [0, n_slots) have been used
        self.strike_index: dict[Decimal, int] = {}
        self.strike_values = np.zeros(256)
        self.call_by_strike = np.zeros(256)
        self.put_by_strike = np.zeros(256)
        self.expiry_index: dict[int, int] = {}
        self.front_expiry_ns: int | None = None
        self._buckets_dirty = False
        self.session_end_ns = session_end_ns(venue, self.t_ref_ns)
        self.profile = np.zeros((k.N_BUCKETS, config.grid_points))
        self._set_grid(self.spot)
        self._profile_stale = False  # quotes stored, profile rebuilt at the snapshot's end
        self._make_scratch()
        self.skipped_unknown = 0  # delta updates of never-seen contracts (no terms came along)

    def _make_scratch(self) -> None:
        """Buffers the kernels work in (not state: rebuilt after a restore, never saved)."""
        self._batch = _QuoteBatch(64)
        threads = max(1, min(numba.get_num_threads(), 8))
        self._partial = np.zeros((threads, *self.profile.shape))  # per-thread rebuild profiles
        self._live_counts = np.zeros(threads, dtype=np.int64)
        self.slot_scratch = np.zeros(self.slot_f.shape[1], dtype=np.int64)  # a list of slots

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for scratch in ("_tau_of", "_batch", "_partial", "_live_counts", "slot_scratch"):
            del state[scratch]  # _tau_of: a function (checkpoints name none), from the config
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._check_restored()
        self._tau_of = TIME_MODELS[self.config.time_model]
        self._make_scratch()

    def _check_restored(self) -> None:
        """The shapes and indices the kernels rely on (they do not bounds-check) and the slot
        bookkeeping: a state that breaks them is refused, never handed to a kernel."""
        cap = self.slot_f.shape[1] if getattr(self.slot_f, "ndim", 0) == 2 else -1
        grid = self.config.grid_points if isinstance(self.config, LevelsConfig) else -1
        ok = (
            cap >= 0
            and grid >= 2
            and _is(self.slot_f, np.float64, (k.N_SLOT_F, cap))
            and _is(self.slot_i, np.int64, (k.N_SLOT_I, cap))
            and _is(self.slot_expiry_ns, np.int64, (cap,))
            and len(self.slot_instrument) == cap
            and type(self.n_slots) is int
            and 0 <= self.n_slots <= cap
            and _is(self.profile, np.float64, (k.N_BUCKETS, grid))
            and _is(self.log_s, np.float64, (grid,))
            and _is(self.grid_spots, np.float64, (grid,))
            and getattr(self.strike_values, "ndim", 0) == 1
            and _is(self.strike_values, np.float64, self.strike_values.shape)
            and _is(self.call_by_strike, np.float64, self.strike_values.shape)
            and _is(self.put_by_strike, np.float64, self.strike_values.shape)
            and len(self.strike_index) <= len(self.strike_values)
            # strikes are numbered 0..n-1 in order of arrival; the kernels index by them
            and sorted(self.strike_index.values()) == list(range(len(self.strike_index)))
        )
        if ok:
            n = self.n_slots
            live = np.fromiter(self.instrument_slot.values(), np.int64, len(self.instrument_slot))
            free = np.fromiter(self._free, np.int64, len(self._free))
            held = np.concatenate([live, free])
            strike_idx = self.slot_i[k.I_STRIKE_IDX, :n]
            ok = (
                bool(((held >= 0) & (held < n)).all())
                and len(np.unique(held)) == len(held) == n  # each used slot live or free once
                and bool(((strike_idx >= 0) & (strike_idx < max(len(self.strike_index), 1))).all())
                and not self.slot_i[:, free].any()  # a free slot is all zeros (not priced)
                and all(self.slot_instrument[s] == name for name, s in self.instrument_slot.items())
            )
        if not ok:
            raise ValueError(f"the restored {self.underlying!r} book breaks its invariants")

    # ------------------------------------------------------------ grid

    def _set_grid(self, center: float) -> None:
        cfg = self.config
        self.grid_center = center
        if cfg.grid_spacing == "log":
            self.log_step = (math.log(cfg.grid_high) - math.log(cfg.grid_low)) / (
                cfg.grid_points - 1
            )
            self.log_s = math.log(center * cfg.grid_low) + self.log_step * np.arange(
                cfg.grid_points
            )
            self.grid_spots = np.exp(self.log_s)
        else:
            self.log_step = 0.0
            self.grid_spots = np.linspace(
                cfg.grid_low * center, cfg.grid_high * center, cfg.grid_points
            )
            self.log_s = np.log(self.grid_spots)

    def grid_needs_recentre(self, spot: float) -> bool:
        half_span = 0.5 * (self.grid_spots[-1] - self.grid_spots[0])
        return abs(spot - self.grid_center) > self.config.recenter_fraction * half_span

    # ------------------------------------------------------------ contracts

    def _position(self, contract: OptionContract) -> float:
        if self.flow is not None:
            return self.flow.position(contract.instrument, contract.is_call, contract.open_interest)
        return dealer_position(self.config.model, contract.is_call, contract.open_interest)

    def _basis(self, contract: OptionContract) -> float:
        if not self.config.use_forwards or not contract.index_price:
            return 1.0
        return contract.underlying_price / contract.index_price

    def _allocate(self, contract: OptionContract) -> int:
        if self._free:
            slot = self._free.pop()
        else:
            if self.n_slots == self.slot_f.shape[1]:
                self._grow_slots()
            slot = self.n_slots
            self.n_slots += 1
        strike_idx = self.strike_index.get(contract.strike)
        if strike_idx is None:
            strike_idx = len(self.strike_index)
            if strike_idx == self.strike_values.shape[0]:
                self._grow_strikes()
            self.strike_index[contract.strike] = strike_idx
            self.strike_values[strike_idx] = float(contract.strike)
        expiry = int(contract.expiry_ns)
        new_front = expiry > self.t_ref_ns and (
            self.front_expiry_ns is None or expiry < self.front_expiry_ns
        )
        expiry_idx = self.expiry_index.setdefault(expiry, len(self.expiry_index))
        f, i = self.slot_f, self.slot_i
        f[:, slot] = math.nan
        f[k.F_STRIKE, slot] = float(contract.strike)
        f[k.F_MULTIPLIER, slot] = contract.multiplier
        f[k.F_TAU, slot] = math.nan  # set for all new slots of a batch at once, see upsert
        i[:, slot] = 0
        i[k.I_STATE, slot] = k.SLOT_PRESENT
        i[k.I_IS_CALL, slot] = 1 if contract.is_call else 0
        i[k.I_STRIKE_IDX, slot] = strike_idx
        i[k.I_EXPIRY_IDX, slot] = expiry_idx
        self.slot_expiry_ns[slot] = expiry
        i[k.I_BUCKETS, slot] = self._buckets_of(expiry)
        self.slot_instrument[slot] = contract.instrument
        self.instrument_slot[contract.instrument] = slot
        if new_front:
            # A nearer expiry changes the front bucket of every slot: redone after the batch.
            self.front_expiry_ns = expiry
            self._buckets_dirty = True
        return slot

    def _buckets_of(self, expiry_ns: int) -> int:
        if expiry_ns <= self.t_ref_ns:
            return 0
        bits = k.BUCKET_ALL
        if expiry_ns <= self.session_end_ns:
            bits |= k.BUCKET_0DTE
        if expiry_ns == self.front_expiry_ns:
            bits |= k.BUCKET_FRONT
        return bits

    def _grow_slots(self) -> None:
        cap = self.slot_f.shape[1] * 2
        self.slot_f = _grown(self.slot_f, cap)
        self.slot_i = _grown(self.slot_i, cap)
        self.slot_expiry_ns = np.concatenate(
            [self.slot_expiry_ns, np.zeros(cap - self.slot_expiry_ns.shape[0], dtype=np.int64)]
        )
        self.slot_instrument.extend([None] * (cap - len(self.slot_instrument)))
        self.slot_scratch = np.zeros(cap, dtype=np.int64)

    def _grow_strikes(self) -> None:
        n = self.strike_values.shape[0] * 2
        self.strike_values = np.concatenate([self.strike_values, np.zeros(n // 2)])
        self.call_by_strike = np.zeros(n)
        self.put_by_strike = np.zeros(n)

    def upsert(self, contracts: Iterable[OptionContract]) -> int:
        """Add new contracts and apply quote updates to known ones, in kernel batches.

        Every contract's values are checked first (``schemas.domain``): one out of its domain
        raises ValueError naming the field and the value, and nothing changes. Returns the
        number of contracts applied.
        """
        contracts = list(contracts)
        for contract in contracts:
            if contract.underlying != self.underlying:
                raise ValueError(
                    f"{contract.instrument} belongs to {contract.underlying}, not {self.underlying}"
                )
            problem = contract_problem(contract)
            if problem is not None:
                raise ValueError(problem)
        new_slots = []
        slots = []
        for contract in contracts:
            slot = self.instrument_slot.get(contract.instrument)
            if slot is None:
                slot = self._allocate(contract)
                new_slots.append(slot)
            slots.append(slot)
        if new_slots:
            new = np.array(new_slots, dtype=np.int64)
            self.slot_f[k.F_TAU, new] = self._tau_of(self.slot_expiry_ns[new], self.t_ref_ns)
        if slots:
            oi = np.fromiter((c.open_interest for c in contracts), np.float64, len(contracts))
            store_last(self.slot_f[k.F_OI], np.array(slots, dtype=np.int64), oi)
        batch = self._batch
        batch.clear()
        for slot, contract in zip(slots, contracts, strict=True):
            if batch.full():
                self._flush(batch)
            batch.add(
                slot,
                contract.iv if contract.iv is not None else math.nan,
                self._position(contract),
                self._basis(contract),
                contract.gamma if contract.gamma is not None else math.nan,
            )
            self.ts_event_ns = max(self.ts_event_ns, contract.ts_event_ns)
        self._flush(batch)
        if self._buckets_dirty:
            self._refresh_buckets_and_rebuild()
        return len(contracts)

    def requote(self, instrument: str) -> bool:
        """Re-apply a contract's stored quote with its current dealer position (the flow
        model after a trade); False when the contract is unknown."""
        slot = self.instrument_slot.get(instrument)
        if slot is None:
            return False
        f = self.slot_f
        is_call = bool(self.slot_i[k.I_IS_CALL, slot] == 1)
        if self.flow is not None:
            oi = self.flow.open_interest.get(instrument, 0.0)
            position = self.flow.position(instrument, is_call, oi)
        else:
            position = float(f[k.F_POSITION, slot])
        one = np.ones(1)
        k.apply_quotes(
            self.profile, self.log_s, self.log_step, self.slot_f, self.slot_i,
            np.array([slot], dtype=np.int64), one * f[k.F_IV, slot], one * position,
            one * f[k.F_BASIS, slot], one * f[k.F_VENUE_GAMMA, slot],
        )  # fmt: skip
        return True

    def ensure_profile(self) -> None:
        """Rebuild if quotes were stored for a rebuild that has not happened yet."""
        if self._profile_stale:
            self.rebuild()

    def remove_many(self, instruments: Iterable[str]) -> int:
        """Drop several contracts at once; returns how many were known."""
        slots = [s for s in map(self.instrument_slot.get, instruments) if s is not None]
        if not slots:
            return 0
        front_hit = False
        for slot in slots:
            front_hit |= int(self.slot_expiry_ns[slot]) == self.front_expiry_ns
            self._remove(self.slot_instrument[slot], refresh_front=False)
        if front_hit and not self._expiry_listed(self.front_expiry_ns):
            self._refresh_buckets_and_rebuild()
        return len(slots)

    def _flush(self, batch: _QuoteBatch) -> None:
        n = batch.size
        if n == 0:
            return
        k.apply_quotes(
            self.profile,
            self.log_s,
            self.log_step,
            self.slot_f,
            self.slot_i,
            batch.slots[:n],
            batch.iv[:n],
            batch.position[:n],
            batch.basis[:n],
            batch.venue_gamma[:n],
        )
        batch.size = 0

    def remove(self, instrument: str) -> bool:
        """Drop a contract (delisted or gone from a snapshot); True if it was known."""
        return self._remove(instrument, refresh_front=True)

    def _remove(self, instrument: str, refresh_front: bool) -> bool:
        slot = self.instrument_slot.pop(instrument, None)
        if slot is None:
            return False
        k.retract_slots(
            self.profile,
            self.log_s,
            self.log_step,
            self.slot_f,
            self.slot_i,
            np.array([slot], dtype=np.int64),
        )
        expiry = int(self.slot_expiry_ns[slot])
        self.slot_i[:, slot] = 0
        self.slot_f[:, slot] = 0.0
        self.slot_expiry_ns[slot] = 0
        self.slot_instrument[slot] = None
        self._free.append(slot)
        if self.flow is not None:
            self.flow.forget(instrument)
        if refresh_front and expiry == self.front_expiry_ns and not self._expiry_listed(expiry):
            self._refresh_buckets_and_rebuild()  # the front expiry emptied: the next one leads
        return True

    def _expiry_listed(self, expiry_ns: int) -> bool:
        n = self.n_slots
        present = self.slot_i[k.I_STATE, :n] == k.SLOT_PRESENT
        return bool(np.any(present & (self.slot_expiry_ns[:n] == expiry_ns)))

    def load(self, snapshot: ChainSnapshot) -> None:
        """Fill an empty book from a complete chain snapshot."""
        self.upsert(snapshot.contracts)

    # ------------------------------------------------------------ time and spot

    def set_spot(self, spot: float, ts_event_ns: int | None = None) -> None:
        """Move spot; re-centres the grid (and rebuilds) when spot leaves the grid's centre."""
        problem = price_problem("spot", spot)
        if problem is not None:
            raise ValueError(problem)
        self.spot = float(spot)
        if ts_event_ns is not None:
            self.ts_event_ns = max(self.ts_event_ns, int(ts_event_ns))
        if self.grid_needs_recentre(self.spot):
            self._set_grid(self.spot)
            self.rebuild()

    def advance_time(self, t_ref_ns: int, drop_expired: bool = True) -> list[str]:
        """Move the reference time: re-derive every T, the buckets and the profile.

        Returns the instruments that have settled (removed when ``drop_expired``).
        """
        self.t_ref_ns = int(t_ref_ns)
        self.session_end_ns = session_end_ns(self.venue, self.t_ref_ns)
        n = self.n_slots
        present = self.slot_i[k.I_STATE, :n] == k.SLOT_PRESENT
        settled_slots = np.flatnonzero(present & (self.slot_expiry_ns[:n] <= self.t_ref_ns))
        settled = [self.slot_instrument[s] for s in settled_slots]
        if drop_expired:
            for instrument in settled:
                self._remove(instrument, refresh_front=False)  # one rebuild below covers all
        self._refresh_buckets_and_rebuild()
        return settled

    def _refresh_buckets_and_rebuild(self) -> None:
        self._buckets_dirty = False
        n = self.n_slots
        present = self.slot_i[k.I_STATE, :n] == k.SLOT_PRESENT
        expiries = self.slot_expiry_ns[:n]
        if n:
            self.slot_f[k.F_TAU, :n] = np.where(present, self._tau_of(expiries, self.t_ref_ns), 0.0)
        alive = present & (expiries > self.t_ref_ns)
        self.front_expiry_ns = int(expiries[alive].min()) if alive.any() else None
        bits = np.where(alive, k.BUCKET_ALL, 0)
        bits |= np.where(alive & (expiries <= self.session_end_ns), k.BUCKET_0DTE, 0)
        if self.front_expiry_ns is not None:
            bits |= np.where(alive & (expiries == self.front_expiry_ns), k.BUCKET_FRONT, 0)
        self.slot_i[k.I_BUCKETS, :n] = bits
        self.rebuild()

    def rebuild(self) -> int:
        """Full rebuild of every bucket's profile (also bounds floating-point drift).

        Large books are rebuilt on parallel threads (one partial profile per thread).
        """
        self._profile_stale = False
        if self.n_slots >= PARALLEL_REBUILD_SLOTS and self._partial.shape[0] > 1:
            return k.rebuild_profile_parallel(
                self.profile, self._partial, self._live_counts, self.log_s, self.log_step,
                self.slot_f, self.slot_i, self.n_slots,
            )  # fmt: skip
        return k.rebuild_profile(
            self.profile, self.log_s, self.log_step, self.slot_f, self.slot_i, self.n_slots
        )

    # ------------------------------------------------------------ views

    @property
    def n_contracts(self) -> int:
        return len(self.instrument_slot)

    @property
    def n_strikes(self) -> int:
        return len(self.strike_index)

    def bucket_expiries(self, bucket: str) -> list[int]:
        n = self.n_slots
        mask = (self.slot_i[k.I_BUCKETS, :n] & BUCKET_BITS[bucket]) != 0
        return [int(e) for e in np.unique(self.slot_expiry_ns[:n][mask])]


class _QuoteBatch:
    """Preallocated arrays that carry one batch of quote updates into the kernel."""

    def __init__(self, capacity: int) -> None:
        self.slots = np.zeros(capacity, dtype=np.int64)
        self.iv = np.zeros(capacity)
        self.position = np.zeros(capacity)
        self.basis = np.zeros(capacity)
        self.venue_gamma = np.zeros(capacity)
        self.size = 0

    def clear(self) -> None:
        self.size = 0

    def full(self) -> bool:
        return self.size == self.slots.shape[0]

    def add(self, slot: int, iv: float, position: float, basis: float, gamma: float) -> None:
        j = self.size
        self.slots[j] = slot
        self.iv[j] = iv
        self.position[j] = position
        self.basis[j] = basis
        self.venue_gamma[j] = gamma
        self.size = j + 1


def _is(array: object, dtype: type, shape: tuple[int, ...]) -> bool:
    return (
        isinstance(array, np.ndarray)
        and array.dtype == dtype
        and array.shape == shape
        and array.flags.c_contiguous
    )


def _grown(array: np.ndarray, capacity: int) -> np.ndarray:
    out = np.zeros((array.shape[0], capacity), dtype=array.dtype)
    out[:, : array.shape[1]] = array
    return out
