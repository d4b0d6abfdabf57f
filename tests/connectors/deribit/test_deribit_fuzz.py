"""Mutated Deribit sessions: every invalid message dead-lettered, nothing else changes.

The mutants (``connectors.simulator.malformed``) are invalid or harmless by construction;
the records of a session with mutants mixed in must equal the clean session's, and the
dead letters must be exactly the invalid mutants, each with a reason naming the field.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import random

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.common.ingest import IngestStage, MemorySink, decode_json
from connectors.deribit.normaliser import DeribitNormaliser
from connectors.simulator.deribit_config import SessionConfig
from connectors.simulator.deribit_session import generate_session
from connectors.simulator.malformed import HARMLESS, INVALID, Mutant, mixed_session, mutate
from engine.core.settlement import ms_to_ns
from schemas.topics import Topics

CONFIG = SessionConfig(n_instruments=300, duration_s=20.0, seed=3, ticker_interval_s=2.0)


@functools.cache
def clean_session() -> tuple:
    return tuple(generate_session(CONFIG))


def ingest(messages) -> tuple[MemorySink, DeribitNormaliser, IngestStage]:
    sink = MemorySink()
    normaliser = DeribitNormaliser()
    stage = IngestStage("deribit", normaliser, sink, Topics(), source="fuzz")

    async def run() -> None:
        for message in messages:
            doc, error = decode_json(message.raw)
            await stage.on_message(
                message.raw, doc, message.recv_ns, message.request, decode_error=error
            )

    asyncio.run(run())
    return sink, normaliser, stage


@functools.cache
def clean_records() -> list:
    sink, _, _ = ingest(clean_session())
    assert sink.dead_letters == []
    return sink.records


def test_the_clean_session_produces_records_of_every_kind():
    expected = {"md.options.v1": 300, "md.underlying.v1": 1}  # the book summary and its spot
    topic_of = {
        "deribit_price_index": "md.underlying.v1",
        "deribit_volatility_index": "md.volindex.v1",
        "trades": "md.trades.v1",
    }
    for message in clean_session():
        doc = orjson.loads(message.raw)
        if doc.get("method") != "subscription":
            continue
        channel = doc["params"]["channel"]
        kind = channel.split(".", 1)[0]
        if kind == "ticker":
            topic = "md.funding.v1" if "PERPETUAL" in channel else "md.options.v1"
        else:
            topic = topic_of[kind]
        size = len(doc["params"]["data"]) if kind == "trades" else 1
        expected[topic] = expected.get(topic, 0) + size
    got: dict[str, int] = {}
    for topic, _ in clean_records():
        got[topic] = got.get(topic, 0) + 1
    assert got == expected
    assert len(expected) == 5


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), rate=st.sampled_from([0.02, 0.05, 0.2]))
def test_mutants_mixed_in_change_nothing_but_the_dead_letters(seed, rate):
    mixed = list(mixed_session(clean_session(), rate, seed))
    invalid = [m for m in mixed if isinstance(m, Mutant) and not m.valid]
    harmless = [m for m in mixed if isinstance(m, Mutant) and m.valid]
    sink, _, stage = ingest(m.message if isinstance(m, Mutant) else m for m in mixed)
    assert sink.records == clean_records()
    assert [raw for raw, *_ in sink.dead_letters] == [m.message.raw for m in invalid]
    assert stage.counts["dead_letters"] == len(invalid)
    assert stage.counts["messages"] == len(mixed)
    assert all(reason for _, reason, *_ in sink.dead_letters)
    assert len(invalid) + len(harmless) > 0


SHORT = 600  # messages of the session's start the per-kind tests use (the book comes first)


@functools.cache
def short_clean_records() -> list:
    sink, _, _ = ingest(clean_session()[:SHORT])
    return sink.records


def _one_mutant(kind: str, seed: int) -> tuple[list, Mutant]:
    rng = random.Random(seed)
    session = list(clean_session()[:SHORT])
    notes = [i for i, m in enumerate(session) if b'"method":"subscription"' in m.raw]
    rng.shuffle(notes)
    for at in notes:
        mutant = mutate(session[at], kind, rng)
        if mutant is not None:
            return [*session[: at + 1], mutant.message, *session[at + 1 :]], mutant
    raise AssertionError(f"{kind} applies to no message")


@pytest.mark.parametrize("kind", sorted(INVALID))
@pytest.mark.parametrize("seed", range(8))
def test_each_invalid_kind_is_dead_lettered_with_its_reason(kind, seed):
    messages, mutant = _one_mutant(kind, seed)
    sink, _, _ = ingest(messages)
    assert sink.records == short_clean_records()
    ((raw, reason, venue, source, _),) = sink.dead_letters
    assert (raw, venue, source) == (mutant.message.raw, "deribit", "fuzz")
    (reason_class,) = sink.dead_letter_classes
    assert reason_class == EXPECTED_CLASS[kind] or reason_class in EXPECTED_CLASS[kind]
    if reason_class in ("out_of_domain", "wrong_type"):
        assert ("=" in reason and "(expected" in reason) or "not one of" in reason


@pytest.mark.parametrize("kind", sorted(HARMLESS))
@pytest.mark.parametrize("seed", range(8))
def test_each_harmless_kind_is_accepted_unchanged(kind, seed):
    rng = random.Random(seed)
    session = list(clean_session()[:SHORT])
    notes = [i for i, m in enumerate(session) if b'"method":"subscription"' in m.raw]
    at = rng.choice(notes)
    mutant = mutate(session[at], kind, rng)
    if mutant is None:
        return  # the kind does not apply to this message: the clean case
    sink, _, _ = ingest([*session[:at], mutant.message, *session[at + 1 :]])
    assert sink.dead_letters == []
    assert sink.records == short_clean_records()


EXPECTED_CLASS = {
    "negative_open_interest": "out_of_domain",
    "non_positive_price": "out_of_domain",
    "negative_iv": "out_of_domain",
    "iv_above_cap": "out_of_domain",
    "huge_number": "out_of_domain",
    "wrong_type": ("wrong_type", "bad_instrument"),
    "missing_field": "missing_field",
    "bad_timestamp": ("wrong_type", "out_of_domain", "bad_timestamp"),
    "out_of_order": "out_of_order",
    "foreign_instrument": "bad_instrument",
    "bad_greeks": ("wrong_type", "out_of_domain"),
    "bad_trade": ("out_of_domain",),
    "wrong_data_shape": ("wrong_type", "malformed"),
    "broken_frame": "malformed",
    "rpc_error": "rpc_error",
    "unsupported_channel": ("unsupported", "bad_instrument"),
}


def test_a_negative_open_interest_names_the_field_and_the_value():
    messages, mutant = _one_mutant("negative_open_interest", 1)
    value = orjson.loads(mutant.message.raw)["params"]["data"]["open_interest"]
    name = orjson.loads(mutant.message.raw)["params"]["data"]["instrument_name"]
    sink, _, _ = ingest(messages)
    ((_, reason, *_),) = sink.dead_letters
    assert reason == f"Deribit ticker {name}: open_interest={value!r} (expected >= 0.0)"


def test_a_book_summary_with_bad_rows_applies_the_rest_and_lists_them():
    session = list(clean_session()[:SHORT])
    at = next(
        i
        for i, m in enumerate(session)
        if (m.request or {}).get("method") == "public/get_book_summary_by_currency"
    )
    doc = orjson.loads(session[at].raw)
    rows = doc["result"]
    options = [i for i, r in enumerate(rows) if r["instrument_name"].count("-") == 3]
    first, second = rows[options[3]], rows[options[7]]
    first["open_interest"] = -21.0
    second["underlying_price"] = "n/a"
    bad = dataclasses.replace(session[at], raw=orjson.dumps(doc))
    sink, _, stage = ingest([*session[:at], bad, *session[at + 1 :]])
    ((raw, reason, *_),) = sink.dead_letters
    assert raw == bad.raw
    assert reason == (
        f"2 rows rejected, {len(options) - 2} applied: "
        f"Deribit book summary {first['instrument_name']}: open_interest=-21.0 (expected >= 0.0); "
        f"Deribit book summary {second['instrument_name']}: underlying_price='n/a' "
        "(expected float | null, got str)"
    )
    assert stage.dead_letter_kinds == {"out_of_domain": 1}
    names = {first["instrument_name"], second["instrument_name"]}
    # The rows left out are missing from the book summary's records, and only they are:
    # their first ticker then comes as the first record of them.
    expected = [
        (t, r)
        for t, r in short_clean_records()
        if not (
            getattr(r, "instrument", None) in names
            and r.ts_event_ns == ms_to_ns(first["creation_timestamp"])
        )
    ]
    assert len(expected) == len(short_clean_records()) - 2
    assert sink.records == expected
