"""Event-time merge of a task's partitions; the settings loader; CLI errors of the new commands."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from aiokafka.structs import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.cboe.client import CboeConfig
from connectors.cme.client import CmeConfig
from connectors.funding.client import FundingClientConfig
from engine.app.cli import main
from engine.app.settings import load_settings
from engine.core.config import ConfigError
from engine.stream.merge import EventTimeMerge, InputItem

OPT, IDX = TopicPartition("md.options.v1", 0), TopicPartition("md.underlying.v1", 0)


def items(tp: TopicPartition, stamps: list[int], first: int = 0) -> list[InputItem]:
    return [InputItem(tp, first + i, ts, None) for i, ts in enumerate(stamps)]


def order(released: list[InputItem]) -> list[tuple[str, int]]:
    return [(item.tp.topic[3:6], item.ts) for item in released]


def test_released_in_event_time_order_while_every_partition_has_data() -> None:
    merge = EventTimeMerge([OPT, IDX])
    merge.push(OPT, items(OPT, [1, 3, 5, 7]))
    merge.push(IDX, items(IDX, [2, 6]))
    # Nobody is caught up: the merge stops when a partition runs dry (IDX after 6).
    out = list(merge.release(lambda tp: False))
    assert order(out) == [("opt", 1), ("und", 2), ("opt", 3), ("opt", 5), ("und", 6)]
    assert merge.buffered() == 1
    # Once IDX is caught up with the broker, the rest flows.
    assert order(list(merge.release(lambda tp: tp == IDX))) == [("opt", 7)]


def test_an_empty_partition_that_is_behind_holds_the_merge_until_idle() -> None:
    now = [0.0]
    merge = EventTimeMerge([OPT, IDX], max_idle_s=0.5, clock=lambda: now[0])
    merge.push(OPT, items(OPT, [1, 2]))
    assert list(merge.release(lambda tp: tp == OPT)) == []
    now[0] = 0.4
    assert list(merge.release(lambda tp: tp == OPT)) == []
    now[0] = 0.6
    assert order(list(merge.release(lambda tp: tp == OPT))) == [("opt", 1), ("opt", 2)]


def test_ties_break_by_topic_rank_then_offset() -> None:
    merge = EventTimeMerge([OPT, IDX])
    merge.push(IDX, items(IDX, [5, 5]))
    merge.push(OPT, items(OPT, [5]))
    out = list(merge.release(lambda tp: True))
    assert [(i.tp.topic, i.offset) for i in out] == [
        (OPT.topic, 0),
        (IDX.topic, 0),
        (IDX.topic, 1),
    ]


@settings(max_examples=80, deadline=None)
@given(
    a=st.lists(st.integers(0, 50), max_size=30).map(sorted),
    b=st.lists(st.integers(0, 50), max_size=30).map(sorted),
    seed=st.integers(0, 10_000),
)
def test_order_does_not_depend_on_how_fetches_split_the_input(
    a: list[int], b: list[int], seed: int
) -> None:
    """Any split of the two partitions into fetches gives the order of one global sort."""
    expected = sorted(
        [(ts, 0, i) for i, ts in enumerate(a)] + [(ts, 1, i) for i, ts in enumerate(b)]
    )
    rng = random.Random(seed)
    merge = EventTimeMerge([OPT, IDX])
    cursors = {OPT: 0, IDX: 0}
    stamps = {OPT: a, IDX: b}
    out: list[InputItem] = []
    while any(cursors[tp] < len(stamps[tp]) for tp in cursors) or merge.buffered():
        tp = rng.choice([OPT, IDX])
        n = rng.randint(0, 4)
        start = cursors[tp]
        merge.push(tp, items(tp, stamps[tp][start : start + n], first=start))
        cursors[tp] = min(start + n, len(stamps[tp]))
        out.extend(merge.release(lambda t: cursors[t] >= len(stamps[t])))
    rank = {OPT: 0, IDX: 1}
    assert [(i.ts, rank[i.tp], i.offset) for i in out] == expected


def test_settings_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    config = tmp_path / "engine.toml"
    config.write_text(
        'kafka = "file:1"\nredis = "redis://file:6379/0"\ngroup_id = "from-file"\n'
        "max_records = 500\n[detector]\ndwell_s = 7.5\n[levels]\ngrid_points = 300\n"
        "[task]\nmax_eval_gap_s = 2.0\n"
    )
    env = {"REGIME_ENGINE_REDIS": "redis://env:6379/1", "REGIME_ENGINE_IDEMPOTENCE": "false"}
    loaded = load_settings({"kafka": "flag:9092", "model": "short_all"}, env, str(config))
    assert loaded.kafka == "flag:9092"
    assert loaded.redis == "redis://env:6379/1"
    assert loaded.idempotence is False
    engine = loaded.engine_config(loaded.kafka, loaded.redis, embedded_kafka=False)
    assert engine.group_id == "from-file"
    assert engine.levels.grid_points == 300 and engine.levels.model == "short_all"
    assert engine.task.max_eval_gap_s == 2.0
    assert engine.enable_idempotence is False and engine.max_records == 500
    assert engine.detector.dwell_s == 7.5


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("bogus = 1\n", {}, "unknown settings config keys: bogus"),
        ("[detector]\nbogus = 1\n", {}, "unknown detector config keys: bogus"),
        ("[levels]\nbogus = 1\n", {}, "unknown levels config keys: bogus"),
        ("[task]\nmax_eval_gap_s = -1\n", {}, "max_eval_gap_s must be a positive number"),
        ('kafka = "nohost"\n', {}, "kafka must be HOST:PORT"),
        ("x = [\n", {}, "config file"),
        ("", {"REGIME_ENGINE_KAFAK": "a:1"}, "unknown environment variables: REGIME_ENGINE_KAFAK"),
        ("", {"REGIME_ENGINE_IDEMPOTENCE": "maybe"}, "idempotence must be true or false"),
    ],
)
def test_settings_reject_bad_input_with_one_line(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    config = tmp_path / "engine.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as excinfo:
        load_settings({}, env, str(config))
    assert message in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["engine"], "engine needs --kafka and --redis"),
        (["engine", "--kafka", "x:1"], "engine needs --redis"),
        (["engine", "--kafka", "nohost", "--redis", "redis://a:1/0"], "kafka must be HOST:PORT"),
        (["engine", "--kafka", "a:1", "--redis", "http://a"], "redis must be a redis:// URL"),
        (["run", "--source", "cboe:XYZ", "--kafka", "a:1", "--redis", "redis://a:1"], "XYZ"),
        (["subscribe"], "subscribe needs --redis"),
        (["subscribe", "--redis", "redis://127.0.0.1:1/0", "--from", "yesterday"], "stream id"),
        (["subscribe", "--redis", "redis://127.0.0.1:1/0", "--count", "0"], "--count"),
        (["demo", "--speed", "0"], "--speed must be positive"),
        (["demo", "--instruments", "7"], "n_instruments"),
        (["engine", "--config", "/nonexistent.toml", "--kafka", "a:1"], "config file"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("regime-engine: error: ")
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_engine_against_an_unreachable_broker_fails_with_one_line(
    capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    assert main(["engine", "--kafka", "127.0.0.1:1", "--redis", redis_url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("regime-engine: error: kafka 127.0.0.1:1")
    assert "Traceback" not in err


def test_connector_tables_in_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "regime.toml"
    path.write_text(
        "[cboe]\n"
        'symbols = ["SPX", "NDX"]\n'
        "[cboe.poller]\n"
        "interval_s = 30.0\n"
        "[cme]\n"
        'product = "ES"\n'
        f'directory = "{tmp_path}"\n'
        "[funding.okx]\n"
        "stale_after_s = 240.0\n"
    )
    loaded = load_settings({}, {}, str(path))
    cboe, cme, okx = (loaded.venues.get(venue) for venue in ("cboe", "cme", "okx"))
    assert isinstance(cboe, CboeConfig) and cboe.symbols == ("SPX", "NDX")
    assert cboe.poller.interval_s == 30.0
    assert isinstance(cme, CmeConfig) and (cme.product, cme.directory) == (
        "ES",
        str(tmp_path),
    )
    assert set(loaded.venues) == {"cboe", "cme", "okx"}
    assert isinstance(okx, FundingClientConfig) and okx.stale_after_s == 240.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[cme]\nproduct = "ES"\nbogus = 1\n', "unknown CME config keys: bogus"),
        ("[funding.kraken]\nstale_after_s = 1.0\n", "unknown venues kraken"),
        ('[cboe]\nsymbols = ["ZZZ"]\n', "ZZZ"),
    ],
)
def test_bad_connector_tables_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "regime.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings({}, {}, str(path))


def test_cme_source_without_its_table_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", "--source", "cme:ES", "--kafka", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "need a [cme] table" in err
