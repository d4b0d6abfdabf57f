"""Wall breaks under the side rule: judged against the wall in force before the move."""

from __future__ import annotations

from engine.signals.detector import DetectorConfig
from tests.signals.test_detector import Script

CFG = DetectorConfig(band_bps=10, dwell_s=2, level_shift_bps=50)


def test_call_wall_break_names_the_wall_in_force_and_no_shift_restates_it():
    script = Script(CFG)
    script.step(105.0)
    script.step(109.5)
    # spot reaches 110: the side-rule call wall steps on to 115 at once
    outs = [script.step(110.5, call_wall=115.0) for _ in range(4)]
    assert [[(e.type, e.direction, e.level) for e in o] for o in outs] == [
        [],
        [],
        [("call_wall_break", "up", 110.0)],
        [],
    ]
    detail = outs[2][0].detail
    assert (detail["broken_wall"], detail["next_wall"], detail["through"]) == (
        110.0,
        115.0,
        "outward",
    )
    for _ in range(4):
        script.step(111.0, call_wall=115.0)
    assert script.types() == [("call_wall_break", "up")]  # no level_shift 110 -> 115


def test_put_wall_break_down_against_the_held_wall():
    script = Script(CFG)
    script.step(95.0)
    outs = [script.step(89.5, put_wall=85.0) for _ in range(3)]
    assert [[(e.type, e.direction, e.level, e.detail["next_wall"]) for e in o] for o in outs] == [
        [],
        [],
        [("put_wall_break", "down", 90.0, 85.0)],
    ]


def test_touching_the_wall_and_falling_back_is_no_break():
    script = Script(CFG)
    script.step(105.0)
    script.step(110.05, call_wall=115.0)  # at the wall, inside the band: held, pending nothing
    script.step(110.05, call_wall=115.0)
    script.step(108.0)  # back inside: the wall is 110 again
    script.step(108.0)
    script.step(108.0)
    assert script.events == []
    # and a later real break still fires, against 110
    outs = [script.step(111.0, call_wall=115.0) for _ in range(3)]
    assert [(e.type, e.level) for o in outs for e in o] == [("call_wall_break", 110.0)]


def test_a_short_poke_through_is_held_then_dropped():
    script = Script(CFG)
    script.step(105.0)
    script.step(110.5, call_wall=115.0)  # beyond the band for 1 s only (dwell 2 s)
    script.step(109.0)  # back inside
    for _ in range(3):
        script.step(109.0)
    assert script.events == []


def test_global_rule_levels_keep_the_old_behaviour():
    script = Script(CFG)
    script.step(105.0, wall_rule="global")
    # under the global rule a wall that moves is a relocation (a level_shift), never a break
    outs = [script.step(110.5, call_wall=115.0, wall_rule="global") for _ in range(4)]
    assert [(e.type, e.detail.get("from"), e.detail.get("to")) for o in outs for e in o] == [
        ("level_shift", 110.0, 115.0)
    ]


def test_a_wall_that_moves_onto_spot_is_not_a_tag_and_gives_no_reject():
    cfg = DetectorConfig(band_bps=10, dwell_s=0, wall_zone_bps=20, wall_reject_bps=60,
                         level_shift_bps=10_000)  # fmt: skip
    script = Script(cfg)
    script.step(105.0)
    script.step(104.9, call_wall=105.0)  # the call wall relocates to 105, 10 bp above spot
    script.step(104.0, call_wall=105.0)  # 96 bp away: no rejection, spot never tagged it
    assert script.events == []
    script.step(104.9, call_wall=105.0)  # now spot walks up into the zone: a real tag
    out = script.step(104.2, call_wall=105.0)
    assert [(e.type, e.level, e.detail["extreme"]) for e in out] == [("wall_reject", 105.0, 104.9)]


def test_the_held_wall_suppresses_its_level_shift_until_spot_falls_back():
    script = Script(DetectorConfig(band_bps=10, dwell_s=2, level_shift_bps=50))
    script.step(105.0)
    script.step(110.05, call_wall=115.0)  # at the wall in force: held for 3 s, no shift
    script.step(110.05, call_wall=115.0)
    script.step(110.05, call_wall=115.0)
    assert script.events == []
    # back inside while the wall stays at 115 (it moved for another reason): now a shift
    outs = [script.step(108.0, call_wall=115.0) for _ in range(3)]
    assert [(e.type, e.detail["from"], e.detail["to"]) for o in outs for e in o] == [
        ("level_shift", 110.0, 115.0)
    ]
