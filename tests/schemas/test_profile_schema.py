"""The profile object (regime:profile:*): its JSON Schema, its codec, what it holds."""

from __future__ import annotations

import orjson
import pytest
from jsonschema import Draft202012Validator

from engine.app.chain_books import load_books
from engine.core.config import LevelsConfig
from engine.core.profile import compute_profile
from schemas import jsonschema as js
from schemas.profile import PROFILE_SCHEMA, decode_profile, encode_profile
from tests.app.test_cli_levels import HANDMADE, per_contract

CHECKED_IN = orjson.loads((js.JSON_DIR / "profile.schema.json").read_bytes())


def handmade_profile():
    (loaded,) = load_books(HANDMADE, "cboe-csv", LevelsConfig())
    return loaded, compute_profile(loaded.book)


def test_a_computed_profile_validates_and_round_trips():
    loaded, profile = handmade_profile()
    doc = orjson.loads(encode_profile(profile))
    assert list(Draft202012Validator(CHECKED_IN).iter_errors(doc)) == []
    assert decode_profile(encode_profile(profile)) == profile
    assert doc["schema"] == PROFILE_SCHEMA
    assert doc["units"] == "usd_per_1pct"
    assert (doc["underlying"], doc["spot"], doc["asof"]) == ("SPX", 4000.0, "2023-12-22T14:00:00Z")
    assert doc["asof_ns"] == loaded.levels.asof_ns
    assert sorted(doc["buckets"]) == ["0dte", "all", "front"]
    grid = LevelsConfig().grid_points
    all_ = doc["buckets"]["all"]
    assert len(all_["spots"]) == len(all_["profile"]) == grid
    # every strike with a contribution (4400: IV 0, no usable gamma)
    assert all_["strikes"] == [3800.0, 4000.0, 4200.0]
    assert all_["call_gex"][1] == pytest.approx(1000 * per_contract(4000), rel=1e-12)
    assert all_["put_gex"][0] == pytest.approx(-2000 * per_contract(3800), rel=1e-12)
    net = sum(all_["call_gex"]) + sum(all_["put_gex"])
    assert net == pytest.approx(loaded.levels.net_gex, rel=1e-12)
    assert doc["buckets"]["0dte"]["strikes"] == []  # the empty bucket


def test_broken_profiles_fail_validation():
    _, profile = handmade_profile()
    validator = Draft202012Validator(CHECKED_IN)
    doc = orjson.loads(encode_profile(profile))
    del doc["buckets"]["front"]
    assert [e.message for e in validator.iter_errors(doc)] == ["'front' is a required property"]
    doc = orjson.loads(encode_profile(profile))
    doc["buckets"]["all"]["profile"][3] = "x"
    assert len(list(validator.iter_errors(doc))) == 1
    doc = orjson.loads(encode_profile(profile))
    doc["schema"] = "regime.profile/2"
    assert len(list(validator.iter_errors(doc))) == 1
