"""`regime-engine levels` on a small hand-made chain, with hand-checked numbers."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson
import pytest

from engine.app.cli import main, render_table
from schemas.levels import BucketLevels, Levels
from tests.paths import DATA

HANDMADE = DATA / "cboe_handmade.csv"

# tests/data/cboe_handmade.csv: spot 4000, asof 2023-12-22 09:00 New York (14:00Z); one live
# expiry, SPXW 2024-03-22 16:00 New York (20:00Z) = exactly 91.25 days = T 0.25 years; IV 0.4
# so σ√T = 0.2 and d1 = ln(4000/K)/0.2 + 0.1. One contract's GEX at spot (multiplier 100):
#   100 × Γ × S² × 0.01 = 100 × 0.01 × S × φ(d1) / (σ√T) = 20000 × φ(d1).
# OI: 3800 put 2000; 4000 call 1000, put 500; 4200 call 1500; 4400 call 100 with IV 0
# (unusable); an expired 2023-12-15 row.


def phi(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def per_contract(strike: float, spot: float = 4000.0) -> float:
    d1 = math.log(spot / strike) / 0.2 + 0.1
    return 100 * 0.01 * spot * phi(d1) / 0.2


def run_json(capsys, *args: str) -> dict:
    assert main(["levels", *args, "--json"]) == 0
    return orjson.loads(capsys.readouterr().out)


def test_handmade_chain_levels(capsys):
    out = run_json(capsys, str(HANDMADE), "--format", "cboe-csv")
    assert per_contract(4000) == pytest.approx(7939.0509, abs=1e-4)  # 20000 × φ(0.1), by hand
    call = {3800: 0.0, 4000: 1000 * per_contract(4000), 4200: 1500 * per_contract(4200)}
    put = {3800: -2000 * per_contract(3800), 4000: -500 * per_contract(4000), 4200: 0.0}
    net = sum(call.values()) + sum(put.values())
    assert net == pytest.approx(839_063.35, abs=0.01)
    assert out["net_gex"] == pytest.approx(net, rel=1e-12)
    assert out["spot"] == 4000.0
    assert out["asof"] == "2023-12-22T14:00:00Z"
    assert out["units"] == "usd_per_1pct"
    assert out["model"] == "long_calls_short_puts"
    assert out["preset"] is None
    assert out["contracts_used"] == 6
    assert (out["call_wall"], out["put_wall"], out["abs_gamma_strike"]) == (4200.0, 3800.0, 3800.0)
    assert out["regime"] == "positive"
    # Zero gamma: the root of Σ position × 20000-style GEX as spot moves, found by bisection.
    positions = {(3800, False): -2000, (4000, True): 1000, (4000, False): -500, (4200, True): 1500}

    def total(s: float) -> float:
        out_ = 0.0
        for (strike, _), pos in positions.items():
            d1 = math.log(s / strike) / 0.2 + 0.1
            out_ += pos * 100 * 0.01 * s * phi(d1) / 0.2
        return out_

    lo, hi = 3800.0, 4000.0
    assert total(lo) < 0 < total(hi)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if total(mid) < 0 else (lo, mid)
    assert out["zero_gamma"] == pytest.approx(lo, abs=1e-6)
    assert out["zero_gamma"] == pytest.approx(3901.76, abs=0.01)
    assert out["zero_gamma_crossings"] == [out["zero_gamma"]]
    assert out["buckets"]["front"]["net_gex"] == pytest.approx(net, rel=1e-12)
    assert out["buckets"]["0dte"]["contracts_used"] == 0
    assert out["buckets"]["0dte"]["zero_gamma"] is None
    assert out["buckets"]["all"]["expiries"] == ["2024-03-22T20:00:00Z"]


def test_handmade_chain_other_models(capsys):
    out = run_json(capsys, str(HANDMADE), "--format", "cboe-csv", "--model", "short_all")
    gross = 1000 * per_contract(4000) + 1500 * per_contract(4200)
    gross += 2000 * per_contract(3800) + 500 * per_contract(4000)
    assert out["net_gex"] == pytest.approx(-gross, rel=1e-12)
    assert out["regime"] == "negative"
    assert out["zero_gamma"] is None
    assert out["model"] == "short_all"


def perfiliev_reference(path: Path) -> tuple[float, float]:
    """A tiny independent re-statement of the Perfiliev script on the hand-made file."""
    spot = 4000.0
    today = np.datetime64("2023-12-22")
    rows = []  # (expiry, strike, call_iv, call_gamma, call_oi, put_iv, put_gamma, put_oi)
    for line in path.read_text().splitlines()[4:]:
        f = line.split(",")
        expiry = np.datetime64(datetime.strptime(f[0], "%a %b %d %Y").date())
        rows.append(
            (
                expiry,
                float(f[11]),
                float(f[7]),
                float(f[9]),
                float(f[10]),
                float(f[18]),
                float(f[20]),
                float(f[21]),
            )
        )
    rows = [r for r in rows if r[0] >= today]  # expired rows dropped
    net = sum((r[3] * r[4] - r[6] * r[7]) * 100 * spot * spot * 0.01 for r in rows)

    def gamma_ex(s, k, vol, t, oi):
        if t == 0 or vol == 0:
            return 0.0
        dp = (np.log(s / k) + 0.5 * vol**2 * t) / (vol * np.sqrt(t))
        return (
            oi
            * 100
            * s
            * s
            * 0.01
            * np.exp(-0.5 * dp * dp)
            / np.sqrt(2 * np.pi)
            / (s * vol * np.sqrt(t))
        )

    levels = np.linspace(0.8 * spot, 1.2 * spot, 60)
    total = []
    for level in levels:
        g = 0.0
        for r in rows:
            days = np.busday_count(today, r[0])
            t = 1 / 262 if days == 0 else days / 262
            g += gamma_ex(level, r[1], r[2], t, r[4]) - gamma_ex(level, r[1], r[5], t, r[7])
        total.append(g)
    total = np.array(total)
    idx = np.where(np.diff(np.sign(total)))[0]
    neg, pos = total[idx], total[idx + 1]
    zero = levels[idx + 1] - (levels[idx + 1] - levels[idx]) * pos / (pos - neg)
    return net, float(zero[0])


def test_perfiliev_preset_matches_independent_computation(capsys):
    out = run_json(capsys, str(HANDMADE), "--format", "cboe-csv", "--preset", "perfiliev")
    net, zero = perfiliev_reference(HANDMADE)
    assert net == pytest.approx(720_000.0, rel=1e-12)  # 0.045 × 100 × 4000² × 0.01, by hand
    assert out["net_gex"] == pytest.approx(net, rel=1e-12)
    assert out["zero_gamma"] == pytest.approx(zero, rel=1e-12)
    assert out["preset"] == "perfiliev"
    assert out["model"] == "long_calls_short_puts"
    # 13 weeks = 65 business days from Fri 2023-12-22 to Fri 2024-03-22: T = 65/262, not 0.25.
    assert np.busday_count(np.datetime64("2023-12-22"), np.datetime64("2024-03-22")) == 65


def test_readable_output(capsys):
    assert main(["levels", str(HANDMADE), "--format", "cboe-csv"]) == 0
    text = capsys.readouterr().out
    assert "spot 4000.00" in text
    assert "+839.06 K" in text
    assert "3901.76" in text
    row = next(line for line in text.splitlines() if line.startswith("all "))
    assert row.split()[-5:] == ["3800.00", "3800.00", "positive", "6", "1"]


def test_readable_output_says_when_there_are_several_roots():
    bucket = BucketLevels(1.0, 99.0, (95.0, 99.0, 104.0), 105.0, 95.0, 100.0, "positive", 10)
    empty = BucketLevels(0.0, None, (), None, None, None, None, 0)
    levels = Levels(
        "X", 100.0, 0, "short_all", None, "iv", {"all": bucket, "0dte": empty, "front": empty}
    )
    text = render_table(levels)
    assert "note: 3 zero-gamma crossings in range for 'all': 95.00, 99.00, 104.00" in text
    assert "nearest to spot" in text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["levels", "does-not-exist.csv", "--format", "cboe-csv"], "does-not-exist.csv"),
        (["levels", str(HANDMADE), "--format", "nope"], "invalid choice: 'nope'"),
        (["levels", str(HANDMADE), "--format", "cboe-json"], "cboe_handmade.csv"),
        (
            [
                "levels",
                str(HANDMADE),
                "--format",
                "cboe-csv",
                "--preset",
                "perfiliev",
                "--model",
                "short_all",
            ],
            "--preset perfiliev fixes --model long_calls_short_puts",
        ),
        (["levels", str(HANDMADE)], "--format"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "required: command"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, args, expected):
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("regime-engine: error: ")
    assert expected in lines[0]
    assert "Traceback" not in captured.err


def test_chain_of_only_expired_contracts_is_an_error(tmp_path, capsys):
    text = HANDMADE.read_text().splitlines()
    only_expired = tmp_path / "expired.csv"
    only_expired.write_text("\n".join(text[:5]) + "\n")
    assert main(["levels", str(only_expired), "--format", "cboe-csv"]) == 2
    err = capsys.readouterr().err
    assert "no unexpired contracts" in err
    assert len(err.strip().splitlines()) == 1


def test_preamble_only_file_is_an_empty_chain_error(tmp_path, capsys):
    text = HANDMADE.read_text().splitlines()
    empty = tmp_path / "empty.csv"
    empty.write_text("\n".join(text[:4]) + "\n")
    assert main(["levels", str(empty), "--format", "cboe-csv"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "empty.csv" in err


def test_console_script_runs_as_a_process():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine.app.cli",
            "levels",
            str(HANDMADE),
            "--format",
            "cboe-csv",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert orjson.loads(proc.stdout)["call_wall"] == 4200.0
    bad = subprocess.run(
        [sys.executable, "-m", "engine.app.cli", "levels", "missing.csv", "--format", "cboe-csv"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
