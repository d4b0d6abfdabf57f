"""JSON Schema (draft 2020-12) of the event, levels and profile objects, from the types.

Property names and JSON types come from the dataclass fields and their annotations; the
constraints the types cannot express (enums, consts, descriptions) are added here. Every
object allows additional properties (the contract extends compatibly) but requires the keys
``to_dict`` always emits. ``python -m schemas.jsonschema --out DIR`` writes the files;
``schemas/json/`` holds the checked-in copies.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from schemas.events import DIRECTIONS, EVENT_SCHEMA, EVENT_TYPES, RegimeEvent
from schemas.levels import BUCKETS, LEVEL_KEYS, REGIMES, UNITS, BucketLevels, Levels
from schemas.profile import PROFILE_SCHEMA, BucketProfile, Profile

DRAFT = "https://json-schema.org/draft/2020-12/schema"
BASE_URI = "https://regime-engine.dev/schemas/"
JSON_DIR = Path(__file__).with_name("json")
GENERATED_BY = "Generated from the Python types by `python -m schemas.jsonschema`; do not edit."

_GEX = "in US dollars per 1% move of the underlying"
_NS = "ns since the Unix epoch"
_PRICE = "in the underlying's currency"

_BUCKET_DOC = {
    "net_gex": f"Net dealer GEX at current spot, summed over the bucket's contracts, {_GEX}.",
    "zero_gamma": (
        f"Root of the dealer gamma profile nearest spot, {_PRICE}; null when none in range."
    ),
    "zero_gamma_crossings": f"Every root of the gamma profile in its range, ascending, {_PRICE}.",
    "call_wall": f"Strike with the largest positive net dealer call GEX, {_PRICE}; null if none.",
    "put_wall": (f"Strike with the largest-magnitude net dealer put GEX, {_PRICE}; null if none."),
    "abs_gamma_strike": (
        f"Strike with the largest unnetted |call|+|put| GEX, {_PRICE}; null if none."
    ),
    "regime": "Gamma regime of the bucket; null for an empty bucket.",
    "contracts_used": "Number of contracts that contributed to the bucket.",
    "expiries": "ISO-8601 UTC settlement instants of the expiries in the bucket.",
}
_LEVELS_DOC = {
    "underlying": "Underlying: coin (BTC, ETH), index or ETF root (SPX, SPY), CME product (ES).",
    "spot": f"Spot price of the underlying, {_PRICE}.",
    "asof": "Venue time the levels are as of, ISO-8601 UTC with a Z suffix.",
    "asof_ns": f"Venue time the levels are as of, {_NS}.",
    "model": (
        "Dealer position model: long_calls_short_puts, short_all, short_calls_long_puts or flow."
    ),
    "preset": "Preset the levels were computed with (e.g. perfiliev); null when none.",
    "units": "Units of every GEX value: US dollars per 1% move of the underlying.",
    "gamma_source": '"iv" (re-priced from implied vol) or "venue" (venue-published gamma).',
    "buckets": "Levels of each expiry bucket (all, 0dte, front), keyed by bucket name.",
}
_EVENT_DOC = {
    "schema": "Event schema name and version.",
    "id": (
        "Unique id derived from the triggering input "
        "({topic}/{partition}/{offset}/{type}/{bucket}[/{name}]); stable across replays."
    ),
    "type": "Event type.",
    "underlying": _LEVELS_DOC["underlying"],
    "bucket": "Expiry bucket the event is about.",
    "direction": "Direction of the move; null when the event has none.",
    "ts_event": f"Venue time of the triggering input, {_NS}.",
    "ts_emit": f"Wall-clock time the engine emitted the event, {_NS}.",
    "spot": f"Spot price at the event, {_PRICE}.",
    "level": f"The level involved (zero gamma, the wall, the new level ...), {_PRICE}; or null.",
    "regime": "Gamma regime of the bucket at the event; null for an empty bucket.",
    "levels": "Levels object of the event's bucket, plus spot and asof_ns.",
    "model": _LEVELS_DOC["model"],
    "detail": "Type-specific detail.",
}


_BUCKET_PROFILE_DOC = {
    "spots": f"Hypothetical spot grid, ascending, {_PRICE}.",
    "profile": f"Total dealer GEX of the bucket at each grid spot, {_GEX}.",
    "strikes": f"Strikes with a non-zero call or put GEX, ascending, {_PRICE}.",
    "call_gex": f"Net dealer call GEX at spot for each strike, {_GEX}.",
    "put_gex": f"Net dealer put GEX at spot for each strike, {_GEX}.",
}
_PROFILE_DOC = {
    "schema": "Profile schema name and version.",
    "underlying": _LEVELS_DOC["underlying"],
    "spot": _LEVELS_DOC["spot"],
    "asof": "Venue time the profile is as of (that of the levels beside it), ISO-8601 UTC.",
    "asof_ns": f"Venue time the profile is as of, {_NS}.",
    "model": _LEVELS_DOC["model"],
    "units": _LEVELS_DOC["units"],
    "buckets": "Profile of each expiry bucket (all, 0dte, front), keyed by bucket name.",
}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


def _json_type(hint: Any, refs: dict[type, str]) -> dict[str, Any]:
    """JSON Schema of one annotation; dataclasses in ``refs`` become a ``$ref``."""
    origin, args = get_origin(hint), get_args(hint)
    if hint in refs:
        return {"$ref": refs[hint]}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    if hint is float:
        return {"type": "number"}
    if hint is str:
        return {"type": "string"}
    if origin in (Union, types.UnionType) and len(args) == 2 and type(None) in args:
        (inner,) = (arg for arg in args if arg is not type(None))
        return _nullable(_json_type(inner, refs))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return {"type": "array", "items": _json_type(args[0], refs)}
    if origin is list and len(args) == 1:
        return {"type": "array", "items": _json_type(args[0], refs)}
    if hint is dict or (origin is dict and args[1] is Any):
        return {"type": "object"}
    if origin is dict and args[0] is str:
        return {"type": "object", "additionalProperties": _json_type(args[1], refs)}
    raise TypeError(f"no JSON Schema type for annotation {hint!r}")


def _field_properties(cls: type, refs: dict[type, str] | None = None) -> dict[str, Any]:
    """Property schemas of a dataclass's fields, in field order."""
    hints = get_type_hints(cls)
    return {f.name: _json_type(hints[f.name], refs or {}) for f in dataclasses.fields(cls)}


def _enum(schema: dict[str, Any], values: Sequence[str]) -> dict[str, Any]:
    """``schema`` restricted to ``values`` (plus null when the type is nullable)."""
    nullable = "null" in schema["type"]
    return {**schema, "enum": [*values, None] if nullable else list(values)}


def _described(properties: dict[str, Any], docs: dict[str, str]) -> dict[str, Any]:
    missing = sorted(set(properties) - set(docs))
    if missing:
        raise KeyError(f"no description for {missing}: add them in schemas/jsonschema.py")
    return {name: {**schema, "description": docs[name]} for name, schema in properties.items()}


def _object(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An object requiring every property and allowing additional ones."""
    return {
        "type": "object",
        "properties": properties,
        "required": sorted(properties),
        "additionalProperties": True,
        **extra,
    }


def _header(name: str, title: str) -> dict[str, Any]:
    return {"$schema": DRAFT, "$id": f"{BASE_URI}{name}", "title": title, "$comment": GENERATED_BY}


def _bucket_properties() -> dict[str, Any]:
    properties = _field_properties(BucketLevels)
    properties["regime"] = _enum(properties["regime"], REGIMES)
    return _described(properties, _BUCKET_DOC)


def _bucket_def() -> dict[str, Any]:
    return _object(
        _bucket_properties(),
        description="Levels of one expiry bucket. Prices in the underlying's currency, "
        f"GEX {_GEX}.",
    )


def bucket_levels_schema() -> dict[str, Any]:
    """Schema of ``BucketLevels.to_dict()``: the levels of one expiry bucket."""
    return {**_header("levels.bucket.1.json", "Regime engine bucket levels"), **_bucket_def()}


def levels_schema() -> dict[str, Any]:
    """Schema of ``Levels.to_dict()``: the levels object of DESIGN 2.2 (regime:levels:*)."""
    ref = "#/$defs/bucket_levels"
    fields = _field_properties(Levels, {BucketLevels: ref})
    buckets = {
        **fields.pop("buckets"),
        "properties": {name: {"$ref": ref} for name in BUCKETS},
        "required": list(BUCKETS),
    }
    own = {
        **fields,
        "asof": {
            "type": "string",
            "format": "date-time",
            "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$",
        },
        "units": {"type": "string", "const": UNITS},
        "buckets": buckets,
    }
    bucket = _bucket_properties()
    top = {
        key: {**bucket[key], "description": f"{bucket[key]['description']} Copy of buckets.all."}
        for key in LEVEL_KEYS
    }
    return {
        **_header("levels.1.json", "Regime engine levels"),
        **_object(
            {**_described(own, _LEVELS_DOC), **top},
            description="Levels of one underlying at one instant, for every expiry bucket; "
            "the top-level level keys describe the `all` bucket.",
        ),
        "$defs": {"bucket_levels": _bucket_def()},
    }


def event_schema() -> dict[str, Any]:
    """Schema of ``RegimeEvent.to_dict()``: the event JSON of DESIGN 2.4 (regime.event/1)."""
    properties = _field_properties(RegimeEvent)
    properties["schema"] = {**properties["schema"], "const": EVENT_SCHEMA}
    properties["type"] = _enum(properties["type"], EVENT_TYPES)
    properties["bucket"] = _enum(properties["bucket"], BUCKETS)
    properties["direction"] = _enum(properties["direction"], DIRECTIONS)
    properties["regime"] = _enum(properties["regime"], REGIMES)
    properties["levels"] = {"$ref": "#/$defs/event_levels"}
    levels_fields = _field_properties(Levels, {BucketLevels: "#/$defs/bucket_levels"})
    extra = {name: levels_fields[name] for name in ("spot", "asof_ns")}
    event_levels = {
        "$ref": "#/$defs/bucket_levels",
        **_object(
            _described(extra, _LEVELS_DOC),
            description="The bucket levels object of the event's bucket plus spot and asof_ns.",
        ),
    }
    return {
        **_header("regime.event.1.json", f"Regime event ({EVENT_SCHEMA})"),
        **_object(
            _described(properties, _EVENT_DOC),
            description="One detector event, as published on regime:events:* and "
            "regime:stream:* and logged to regime.events.v1.",
        ),
        "$defs": {"bucket_levels": _bucket_def(), "event_levels": event_levels},
    }


def profile_schema() -> dict[str, Any]:
    """Schema of ``Profile.to_dict()``: the object at regime:profile:* (DESIGN 2.6)."""
    ref = "#/$defs/bucket_profile"
    fields = _field_properties(Profile, {BucketProfile: ref})
    own = {
        "schema": {"type": "string", "const": PROFILE_SCHEMA},
        **fields,
        "asof": {"type": "string", "format": "date-time"},
        "units": {"type": "string", "const": UNITS},
        "buckets": {
            **fields["buckets"],
            "properties": {name: {"$ref": ref} for name in BUCKETS},
            "required": list(BUCKETS),
        },
    }
    bucket = _object(
        _described(_field_properties(BucketProfile), _BUCKET_PROFILE_DOC),
        description="One bucket: spots and profile are parallel arrays, and so are strikes, "
        "call_gex and put_gex.",
    )
    return {
        **_header("profile.1.json", f"Regime engine gamma profile ({PROFILE_SCHEMA})"),
        **_object(
            _described(own, _PROFILE_DOC),
            description="Gamma profile and per-strike GEX of one underlying, per expiry "
            "bucket, written with the levels (regime:profile:*).",
        ),
        "$defs": {"bucket_profile": bucket},
    }


SCHEMA_FILES: dict[str, Callable[[], dict[str, Any]]] = {
    "regime.event.schema.json": event_schema,
    "levels.schema.json": levels_schema,
    "profile.schema.json": profile_schema,
}


def render(schema: dict[str, Any]) -> str:
    """Pretty JSON with sorted keys and a trailing newline."""
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(out: Path) -> list[Path]:
    """Write every schema file into ``out``; return the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, build in SCHEMA_FILES.items():
        path = out / name
        path.write_text(render(build()), encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m schemas.jsonschema", description="Write the JSON Schema files."
    )
    parser.add_argument("--out", type=Path, default=JSON_DIR, help=f"default {JSON_DIR}")
    args = parser.parse_args(argv)
    for path in write_schemas(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
