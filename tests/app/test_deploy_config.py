"""deploy/engine.toml, the configuration the container runs with, loads through load_settings."""

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


def test_every_key_of_deploy_engine_toml_reaches_the_engine_config():
    """A key added to the file but dropped on the way (or renamed in the code) fails here."""
    data = tomllib.loads(DEPLOY_TOML.read_text())
    config = load_settings({}, {}, str(DEPLOY_TOML)).engine_config(
        "kafka:9092", "redis://redis:6379/0", embedded_kafka=False
    )
    tables = {"levels", "detector", "task"}
    assert set(data) - tables == {k for k in data if not isinstance(data[k], dict)}
    for key, value in data.items():
        if key in tables:
            for sub, sub_value in value.items():
                assert getattr(getattr(config, key), sub) == sub_value, f"[{key}] {sub}"
        else:
            assert getattr(config, key) == value, key
