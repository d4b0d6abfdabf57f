"""deploy/engine.toml, the configuration the container runs with, loads through load_settings."""

import re
import tomllib

from engine.app.settings import load_settings
from tests.paths import REPO

DEPLOY_TOML = REPO / "deploy" / "engine.toml"


def test_deploy_engine_toml_loads_with_the_values_it_states():
    settings = load_settings({}, {}, str(DEPLOY_TOML))
    config = settings.engine_config("kafka:9092", "redis://redis:6379/0", embedded_kafka=False)
    assert settings.kafka is None and settings.redis is None and settings.idempotence is None
    assert settings.venues == {}
    assert config.group_id == "regime-engine"
    assert config.partitions == 3
    assert config.stream_maxlen == 100_000
    assert config.max_records == 20_000
    assert config.session_timeout_ms == 10_000
    assert config.heartbeat_interval_ms == 3_000
    assert config.checkpoint_interval_s == 60.0
    assert config.levels.model == "long_calls_short_puts"
    detector = config.detector
    assert (detector.band_bps, detector.dwell_s, detector.level_shift_bps) == (10.0, 3.0, 50.0)
    assert (detector.wall_zone_bps, detector.wall_reject_bps) == (15.0, 50.0)
    assert detector.stale_after_s == 30.0
    task = config.task
    assert (task.max_eval_gap_s, task.rebuild_interval_s, task.rebuild_interval_0dte_s) == (
        5.0,
        60.0,
        10.0,
    )
    assert config.enable_idempotence is True  # a given broker: on unless the file says off


def _config_of(text: str, tmp_path):
    path = tmp_path / "engine.toml"
    path.write_text(text)
    return load_settings({}, {}, str(path)).engine_config(
        "kafka:9092", "redis://redis:6379/0", embedded_kafka=False
    )


def _changed(value):
    """Another valid value of the same kind (the file's values equal the defaults, so only
    a changed one shows the key is read)."""
    if isinstance(value, str):
        return {"long_calls_short_puts": "short_all"}.get(value, value + "-changed")
    return value + 1


def test_every_key_of_deploy_engine_toml_reaches_the_engine_config(tmp_path):
    """Each key of the file, changed in a copy, changes the engine config: a key dropped on
    the way (or renamed in the code, or a file not read) fails here."""
    text = DEPLOY_TOML.read_text()
    data = tomllib.loads(text)
    tables = {"levels", "detector", "task"}
    assert set(data) - tables == {k for k in data if not isinstance(data[k], dict)}
    keys = [(None, k, v) for k, v in data.items() if k not in tables]
    keys += [(t, k, v) for t in sorted(tables) for k, v in data[t].items()]
    assert len(keys) == 17
    for table, key, value in keys:
        line = re.compile(rf"^{key} = [^#\n]*", re.MULTILINE)
        assert len(line.findall(text)) == 1, key
        new = _changed(value)
        config = _config_of(line.sub(f"{key} = {tomllib_value(new)}", text), tmp_path)
        got = getattr(getattr(config, table) if table else config, key)
        assert got == new, f"[{table}] {key}: {got!r}, not the file's {new!r}"


def tomllib_value(value) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)
