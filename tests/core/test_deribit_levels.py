"""Levels of a Deribit book summary: per-expiry forwards kept as spot moves, coin contracts."""

from __future__ import annotations

import math

import orjson
import pytest

from engine.app.cli import main
from tests import reference as ref
from tests.paths import DATA

SUMMARY = DATA / "deribit_summary_small.json"


def independent_contracts() -> tuple[float, int, list[tuple[ref.RefContract, float]]]:
    """Straight from the file: spot = median index, T from expiration_timestamp, IV in %."""
    doc = orjson.loads(SUMMARY.read_bytes())
    rows = [r for r in doc["book_summary"]["result"] if r["instrument_name"].count("-") == 3]
    expiry_ms = {
        i["instrument_name"]: i["expiration_timestamp"] for i in doc["instruments"]["result"]
    }
    asof_ms = max(r["creation_timestamp"] for r in rows)
    index = sorted(r["estimated_delivery_price"] for r in rows)
    spot = (index[len(index) // 2] + index[(len(index) - 1) // 2]) / 2
    out = []
    for r in rows:
        name = r["instrument_name"]
        is_call = name.endswith("-C")
        contract = ref.RefContract(
            strike=float(name.split("-")[2]),
            tau=(expiry_ms[name] - asof_ms) / 1000 / (365 * 86400),
            iv=r["mark_iv"] / 100,
            basis=r["underlying_price"] / r["estimated_delivery_price"],
            position=r["open_interest"] * (1 if is_call else -1),
            multiplier=1.0,
            is_call=is_call,
        )
        out.append((contract, expiry_ms[name]))
    return spot, asof_ms, out


def test_deribit_summary_levels_use_per_expiry_forwards(capsys):
    assert main(["levels", str(SUMMARY), "--format", "deribit-summary", "--json"]) == 0
    out = orjson.loads(capsys.readouterr().out)
    spot, asof_ms, contracts = independent_contracts()
    assert out["underlying"] == "BTC"
    assert out["spot"] == pytest.approx(spot, rel=1e-15)
    assert out["asof_ns"] == asof_ms * 1_000_000
    everything = [c for c, _ in contracts]
    assert out["contracts_used"] == len(everything) == 8
    assert out["net_gex"] == pytest.approx(
        sum(ref.contract_gex(c, spot) for c in everything), rel=1e-12
    )
    # Forwards matter: pricing the same book on spot (basis 1) gives a different number.
    on_spot = sum(
        ref.contract_gex(ref.RefContract(**{**c.__dict__, "basis": 1.0}), spot) for c in everything
    )
    assert not math.isclose(out["net_gex"], on_spot, rel_tol=1e-6)
    front_expiry = min(e for _, e in contracts)
    front = [c for c, e in contracts if e == front_expiry]
    assert out["buckets"]["front"]["net_gex"] == pytest.approx(
        sum(ref.contract_gex(c, spot) for c in front), rel=1e-12
    )
    by_strike = ref.strike_gex(everything, spot)
    assert (out["call_wall"], out["put_wall"], out["abs_gamma_strike"]) == ref.walls(by_strike)
    # The zero-gamma root of the re-priced book, with every forward moved by the same ratio.
    zero = out["zero_gamma"]
    scale = max(abs(ref.contract_gex(c, spot)) for c in everything)
    assert abs(sum(ref.contract_gex(c, zero) for c in everything)) <= 1e-9 * scale
    assert 0.8 * spot < zero < 1.2 * spot
