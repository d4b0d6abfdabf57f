"""The JSON Schema files are generated from the types, current, and accept what the types emit."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from schemas import jsonschema as js
from schemas.events import EVENT_TYPES, RegimeEvent, encode_event
from schemas.levels import BUCKETS, LEVEL_KEYS, REGIMES, BucketLevels, Levels, encode_levels

EVENT_FILE = "regime.event.schema.json"
LEVELS_FILE = "levels.schema.json"
ASOF_NS = 1_741_962_600_000_000_000  # 2025-03-14T14:30:00Z
BUCKET = BucketLevels(
    2.5e9,
    4961.8,
    (4961.8, 5230.0),
    5100.0,
    4900.0,
    5000.0,
    "positive",
    18250,
    ("2025-03-14T20:00:00Z",),
)
EMPTY = BucketLevels(0.0, None, (), None, None, None, None, 0)
NO_NET_GEX = {k: v for k, v in EMPTY.to_dict().items() if k != "net_gex"}
LEVELS = Levels(
    "SPX",
    5012.3,
    ASOF_NS,
    "long_calls_short_puts",
    None,
    "iv",
    {"all": BUCKET, "0dte": EMPTY, "front": BUCKET},
)
EVENT = RegimeEvent(
    id="md.options.v1/0/1234/flip_cross/all",
    type="flip_cross",
    underlying="SPX",
    bucket="all",
    direction="down",
    ts_event=ASOF_NS,
    ts_emit=ASOF_NS + 1_000_000,
    spot=4960.5,
    level=4961.8,
    regime="transition",
    levels={**BUCKET.to_dict(), "spot": 4960.5, "asof_ns": ASOF_NS},
    model="long_calls_short_puts",
    detail={"band_bps": 5.0, "dwell_ms": 2000},
)


@cache
def _checked_in(name: str) -> dict[str, Any]:
    return json.loads((js.JSON_DIR / name).read_text(encoding="utf-8"))


@cache
def _validator(name: str) -> Draft202012Validator:
    schema = _checked_in(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _errors(name: str, doc: dict[str, Any]) -> list[tuple[list[Any], str]]:
    """(path, failing keyword) of every validation error, sorted by path."""
    errors = _validator(name).iter_errors(doc)
    return sorted(((list(e.absolute_path), e.validator) for e in errors), key=str)


def _event_doc() -> dict[str, Any]:
    return orjson.loads(encode_event(EVENT))


def _levels_doc() -> dict[str, Any]:
    return orjson.loads(encode_levels(LEVELS))


@pytest.mark.parametrize("name", sorted(js.SCHEMA_FILES))
def test_checked_in_file_is_what_the_generator_produces_now(name):
    checked_in = (js.JSON_DIR / name).read_text(encoding="utf-8")
    assert checked_in == js.render(js.SCHEMA_FILES[name]()), (
        f"schemas/json/{name} is stale: run `python -m schemas.jsonschema`"
    )


def test_main_writes_pretty_sorted_files_with_a_trailing_newline(tmp_path, capsys):
    assert js.main(["--out", str(tmp_path / "out")]) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == [LEVELS_FILE, "profile.schema.json", EVENT_FILE]
    for name in written:
        text = (tmp_path / "out" / name).read_text(encoding="utf-8")
        schema = json.loads(text)
        assert schema == js.SCHEMA_FILES[name]()
        assert text == json.dumps(schema, indent=2, sort_keys=True) + "\n"
    assert capsys.readouterr().out.splitlines() == [
        str(tmp_path / "out" / EVENT_FILE),
        str(tmp_path / "out" / LEVELS_FILE),
        str(tmp_path / "out" / "profile.schema.json"),
    ]


@pytest.mark.parametrize(
    ("build", "uri", "title"),
    [
        (js.event_schema, "regime.event.1.json", "Regime event (regime.event/1)"),
        (js.levels_schema, "levels.1.json", "Regime engine levels"),
        (js.bucket_levels_schema, "levels.bucket.1.json", "Regime engine bucket levels"),
    ],
)
def test_schemas_are_draft_2020_12_with_ids_and_titles(build, uri, title):
    schema = build()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://regime-engine.dev/schemas/{uri}"
    assert schema["title"] == title
    assert schema["additionalProperties"] is True


def test_levels_with_all_three_buckets_and_an_empty_one_validate():
    doc = _levels_doc()
    assert doc["buckets"]["0dte"]["regime"] is None
    assert _errors(LEVELS_FILE, doc) == []


def test_bucket_levels_schema_accepts_a_full_and_an_empty_bucket():
    validator = Draft202012Validator(js.bucket_levels_schema())
    assert list(validator.iter_errors(BUCKET.to_dict())) == []
    assert list(validator.iter_errors(EMPTY.to_dict())) == []
    errors = validator.iter_errors({**EMPTY.to_dict(), "regime": 1})
    assert sorted(e.validator for e in errors) == ["enum", "type"]


def test_event_validates():
    assert _errors(EVENT_FILE, _event_doc()) == []


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path
        for key in parents:
            doc = doc[key]
        doc[last] = value

    return mutate


def _delete(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path
        for key in parents:
            doc = doc[key]
        del doc[last]

    return mutate


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_set(("type",), "wrong_type"), [(["type"], "enum")]),
        (_delete(("id",)), [([], "required")]),
        (_set(("direction",), "sideways"), [(["direction"], "enum")]),
        (_set(("regime",), "weird"), [(["regime"], "enum")]),
        (_set(("bucket",), "weekly"), [(["bucket"], "enum")]),
        (_set(("schema",), "regime.event/2"), [(["schema"], "const")]),
        (_set(("ts_event",), 1.5), [(["ts_event"], "type")]),
        (_set(("spot",), "4960.5"), [(["spot"], "type")]),
        (_set(("detail",), []), [(["detail"], "type")]),
        (_set(("levels", "net_gex"), "2.5e9"), [(["levels", "net_gex"], "type")]),
        (
            _set(("levels", "zero_gamma_crossings"), [4961.8, "x"]),
            [(["levels", "zero_gamma_crossings", 1], "type")],
        ),
        (_set(("levels", "regime"), "weird"), [(["levels", "regime"], "enum")]),
        (_delete(("levels", "spot")), [(["levels"], "required")]),
        (_delete(("levels", "call_wall")), [(["levels"], "required")]),
    ],
)
def test_broken_events_fail_validation(mutate, expected):
    doc = _event_doc()
    mutate(doc)
    assert _errors(EVENT_FILE, doc) == expected


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_set(("net_gex",), "2.5e9"), [(["net_gex"], "type")]),
        (_set(("regime",), "weird"), [(["regime"], "enum")]),
        (_set(("units",), "usd"), [(["units"], "const")]),
        (_set(("asof",), "2025-03-14 14:30:00"), [(["asof"], "pattern")]),
        (_set(("contracts_used",), 1.5), [(["contracts_used"], "type")]),
        (_set(("zero_gamma_crossings",), ["x"]), [(["zero_gamma_crossings", 0], "type")]),
        (_delete(("gamma_source",)), [([], "required")]),
        (_delete(("buckets", "front")), [(["buckets"], "required")]),
        (_set(("buckets", "0dte", "regime"), "weird"), [(["buckets", "0dte", "regime"], "enum")]),
        (
            _set(("buckets", "front", "zero_gamma_crossings"), [1.0, "x"]),
            [(["buckets", "front", "zero_gamma_crossings", 1], "type")],
        ),
        (
            _set(("buckets", "all", "expiries"), [20250314]),
            [(["buckets", "all", "expiries", 0], "type")],
        ),
        (_set(("buckets", "weekly"), NO_NET_GEX), [(["buckets", "weekly"], "required")]),
    ],
)
def test_broken_levels_fail_validation(mutate, expected):
    doc = _levels_doc()
    mutate(doc)
    assert _errors(LEVELS_FILE, doc) == expected


def test_additional_properties_are_allowed_everywhere():
    event = _event_doc()
    event["new_key"] = 1
    event["levels"]["new_key"] = "x"
    levels = _levels_doc()
    levels["new_key"] = [1]
    levels["buckets"]["all"]["new_key"] = None
    levels["buckets"]["weekly"] = EMPTY.to_dict()
    assert _errors(EVENT_FILE, event) == []
    assert _errors(LEVELS_FILE, levels) == []


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_every_dataclass_field_is_a_required_property_of_the_checked_in_files():
    event = _checked_in(EVENT_FILE)
    levels = _checked_in(LEVELS_FILE)
    buckets = [event["$defs"]["bucket_levels"], levels["$defs"]["bucket_levels"]]
    cases = [(RegimeEvent, event), (Levels, levels), *((BucketLevels, b) for b in buckets)]
    for cls, schema in cases:
        assert _field_names(cls) <= set(schema["properties"]), cls.__name__
        assert _field_names(cls) <= set(schema["required"]), cls.__name__
    event_levels = event["$defs"]["event_levels"]
    assert event_levels["$ref"] == "#/$defs/bucket_levels"
    assert event_levels["required"] == ["asof_ns", "spot"]


def test_required_keys_are_exactly_what_to_dict_emits():
    event = _checked_in(EVENT_FILE)
    levels = _checked_in(LEVELS_FILE)
    assert set(event["required"]) == set(EVENT.to_dict())
    assert set(levels["required"]) == set(LEVELS.to_dict())
    assert set(levels["$defs"]["bucket_levels"]["required"]) == set(BUCKET.to_dict())
    assert levels["properties"]["buckets"]["required"] == ["all", "0dte", "front"]


def test_enums_and_consts_come_from_the_contract():
    event = _checked_in(EVENT_FILE)["properties"]
    levels = _checked_in(LEVELS_FILE)["properties"]
    assert event["type"]["enum"] == list(EVENT_TYPES)
    assert event["direction"] == {**event["direction"], "enum": ["up", "down", None]}
    assert event["direction"]["type"] == ["string", "null"]
    assert event["bucket"]["enum"] == ["all", "0dte", "front"]
    assert event["regime"]["enum"] == ["positive", "negative", "transition", None]
    assert event["schema"]["const"] == "regime.event/1"
    assert levels["units"]["const"] == "usd_per_1pct"
    assert levels["regime"]["enum"] == ["positive", "negative", "transition", None]
    assert "US dollars per 1% move" in levels["net_gex"]["description"]
    assert "ns since the Unix epoch" in event["ts_event"]["description"]


def test_top_level_level_keys_describe_the_all_bucket():
    levels = _checked_in(LEVELS_FILE)
    bucket = levels["$defs"]["bucket_levels"]["properties"]
    for key in LEVEL_KEYS:
        top = levels["properties"][key]
        assert top["description"] == bucket[key]["description"] + " Copy of buckets.all."
        assert {**top, "description": None} == {**bucket[key], "description": None}


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        (float, {"type": "number"}),
        (int, {"type": "integer"}),
        (str, {"type": "string"}),
        (float | None, {"type": ["number", "null"]}),
        (tuple[float, ...], {"type": "array", "items": {"type": "number"}}),
        (dict[str, Any], {"type": "object"}),
        (dict[str, int], {"type": "object", "additionalProperties": {"type": "integer"}}),
    ],
)
def test_annotation_to_json_type(hint, expected):
    assert js._json_type(hint, {}) == expected


def test_unsupported_annotation_is_an_error():
    with pytest.raises(TypeError, match="no JSON Schema type"):
        js._json_type(set[int], {})


_finite = st.floats(allow_nan=False, allow_infinity=False)
_text = st.text(st.characters(codec="utf-8"), max_size=12)
_ns = st.integers(0, 2**63 - 1)
_bucket = st.builds(
    BucketLevels,
    net_gex=_finite,
    zero_gamma=st.none() | _finite,
    zero_gamma_crossings=st.lists(_finite, max_size=4).map(tuple),
    call_wall=st.none() | _finite,
    put_wall=st.none() | _finite,
    abs_gamma_strike=st.none() | _finite,
    regime=st.none() | st.sampled_from(REGIMES),
    contracts_used=st.integers(0, 2**63 - 1),
    expiries=st.lists(_text, max_size=3).map(tuple),
)
_levels = st.builds(
    Levels,
    underlying=_text,
    spot=_finite,
    asof_ns=_ns,
    model=_text,
    preset=st.none() | _text,
    gamma_source=_text,
    buckets=st.fixed_dictionaries(dict.fromkeys(BUCKETS, _bucket)),
)
_json_value = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | _finite | _text
_event = st.builds(
    RegimeEvent,
    id=_text,
    type=st.sampled_from(EVENT_TYPES),
    underlying=_text,
    bucket=st.sampled_from(BUCKETS),
    direction=st.sampled_from(("up", "down", None)),
    ts_event=_ns,
    ts_emit=_ns,
    spot=_finite,
    level=st.none() | _finite,
    regime=st.none() | st.sampled_from(REGIMES),
    levels=st.builds(
        lambda bucket, spot, asof_ns: {**bucket.to_dict(), "spot": spot, "asof_ns": asof_ns},
        _bucket,
        _finite,
        _ns,
    ),
    model=_text,
    detail=st.dictionaries(_text, _json_value, max_size=4),
)


@given(_levels)
def test_generated_levels_validate(levels):
    assert _errors(LEVELS_FILE, orjson.loads(encode_levels(levels))) == []


@given(_event)
def test_generated_events_validate(event):
    assert _errors(EVENT_FILE, orjson.loads(encode_event(event))) == []


def test_checked_in_files_sit_in_the_schemas_package():
    assert Path(js.__file__).parent / "json" == js.JSON_DIR
    assert sorted(p.name for p in js.JSON_DIR.glob("*.json")) == [
        LEVELS_FILE,
        "profile.schema.json",
        EVENT_FILE,
    ]
