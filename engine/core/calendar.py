"""Time to expiry and trading sessions (DESIGN §2.1)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import numpy as np

from engine.core.settlement import DERIBIT_SETTLEMENT, NEW_YORK, instant_ns
from schemas.time import NS_PER_S, NS_PER_YEAR

PERFILIEV_DAYS_PER_YEAR = 262.0

# How each venue's trading day is cut: 0DTE means "settles before this session ends".
_UTC_0800_VENUES = frozenset({"deribit"})


def act365_tau(expiry_ns: np.ndarray, t_ref_ns: int) -> np.ndarray:
    """Years to the settlement instant, real time / 365 days (≤ 0 once settled)."""
    return (expiry_ns - t_ref_ns) / NS_PER_YEAR


def new_york_date(ns: int):
    return datetime.fromtimestamp(ns / NS_PER_S, tz=UTC).astimezone(NEW_YORK).date()


def perfiliev_tau(expiry_ns: np.ndarray, t_ref_ns: int) -> np.ndarray:
    """The Perfiliev script's T: numpy business days from the quote date to the expiry date
    (New York dates) / 262, a 0-business-day expiry floored to 1/262. Settled contracts get a
    non-positive T so that they are excluded, as for every time model."""
    if expiry_ns.size == 0:
        return np.zeros(0)
    quote_day = np.datetime64(new_york_date(t_ref_ns), "D")
    unique, inverse = np.unique(expiry_ns, return_inverse=True)
    unique_days = np.array([np.datetime64(new_york_date(int(e)), "D") for e in unique])
    busdays = np.busday_count(quote_day, unique_days)[inverse].astype(np.float64)
    tau = np.where(busdays == 0, 1.0, busdays) / PERFILIEV_DAYS_PER_YEAR
    return np.where(expiry_ns > t_ref_ns, tau, -1.0)


TIME_MODELS = {"act365": act365_tau, "perfiliev": perfiliev_tau}


def session_end_ns(venue: str, t_ref_ns: int) -> int:
    """End of the trading session containing ``t_ref_ns``.

    Deribit trades around the clock and settles daily at 08:00 UTC, so its session runs to
    the next 08:00 UTC; the US venues' session is the New York calendar day.
    """
    now = datetime.fromtimestamp(t_ref_ns / NS_PER_S, tz=UTC)
    if venue in _UTC_0800_VENUES:
        end = datetime.combine(now.date(), DERIBIT_SETTLEMENT, tzinfo=UTC)
        if end <= now:
            end += timedelta(days=1)
    else:
        local = now.astimezone(NEW_YORK)
        end = datetime.combine(local.date() + timedelta(days=1), time(0, 0), tzinfo=NEW_YORK)
    return instant_ns(end)
