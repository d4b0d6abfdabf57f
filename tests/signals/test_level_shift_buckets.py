"""The level-shift threshold per bucket ([detector] level_shift_bps_by_bucket)."""

from __future__ import annotations

import pytest

from engine.app.settings import load_settings
from engine.core.config import ConfigError
from engine.signals.detector import DetectorConfig, RegimeDetector, Trigger
from schemas.levels import BucketLevels, Levels
from tests.signals.test_detector import T0, S, bucket


def step_levels(spot: float, ts: int, wall: float) -> Levels:
    near = bucket(call_wall=wall)
    far = BucketLevels(**{**{n: getattr(near, n) for n in BucketLevels.__slots__},
                          "expiries": ("2023-11-20T08:00:00Z",)})  # fmt: skip
    near = BucketLevels(**{**{n: getattr(near, n) for n in BucketLevels.__slots__},
                           "expiries": ("2023-11-15T08:00:00Z",)})  # fmt: skip
    return Levels("BTC", spot, ts, "long_calls_short_puts", None, "iv",
                  {"all": far, "0dte": near, "front": far})  # fmt: skip


def shifts(config: DetectorConfig, walls: list[float]) -> list[tuple[str, float]]:
    detector = RegimeDetector("BTC", config, clock_ns=lambda: 1)
    out = []
    for n, wall in enumerate(walls):
        trigger = Trigger("md.underlying.v1", 0, n, T0 + n * S)
        for e in detector.evaluate(step_levels(100.0, T0 + n * S, wall), trigger):
            if e.type == "level_shift" and e.detail["level_name"] == "call_wall":
                out.append((e.bucket, e.detail["to"]))
    return out


def test_a_one_percent_wall_move_shifts_all_but_not_0dte_by_default():
    # the call wall moves 110 -> 111 (100 bp of spot 100): over all's 50 bp, under the 200 of
    # 0dte and front (front holds all's expiries here: all's event is kept, it has no twin)
    walls = [110.0] * 2 + [111.0] * 5
    assert shifts(DetectorConfig(dwell_s=2), walls) == [("all", 111.0)]
    cfg = DetectorConfig(dwell_s=2, level_shift_bps_by_bucket=(("front", 200.0),))
    assert shifts(cfg, walls) == [("all", 111.0), ("0dte", 111.0)]
    assert DetectorConfig().level_shift_bps_of("0dte") == 200.0
    assert DetectorConfig().level_shift_bps_of("all") == 50.0


@pytest.mark.parametrize(
    "value", [(("weekly", 10.0),), (("0dte", -1.0),), (("0dte", "x"),), (("0dte",),)]
)
def test_bad_entries_are_rejected(value):
    with pytest.raises(ConfigError, match="level_shift_bps_by_bucket"):
        DetectorConfig(level_shift_bps_by_bucket=value)


def test_toml_table_gives_the_pairs(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[detector]\nlevel_shift_bps_by_bucket = [["0dte", 120.0]]\n')
    detector = load_settings({}, {}, str(path)).engine["detector"]
    assert detector.level_shift_bps_by_bucket == (("0dte", 120.0),)
    assert detector.level_shift_bps_of("front") == 50.0
