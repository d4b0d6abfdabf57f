"""`make bench` smoke run: each benchmark script at a tiny size, its JSON keys and values sane.

The scripts are listed explicitly (a new one must be added here, see
``test_every_benchmark_script_is_listed``); they run concurrently in subprocesses, started
once for the module, so the file's wall time is the slowest script's, not their sum.
"""

import json
import math
import os
import subprocess
import sys

import pytest

from tests.paths import REPO

BENCHMARKS = REPO / "benchmarks"
SUPPORT = {"pipeline_support.py", "pipeline_pacing.py", "pipeline_dashboard.py"}  # not run
# Needs Apache Kafka (`make kafka-jars`) and runs engine processes for ~35 s: `make bench` only.
BY_HAND = {"failover.py"}
SCRIPTS = {
    "kernels.py": ["--contracts", "200", "--ticks", "200", "--quick"],
    "deribit_ingest.py": ["--instruments", "300", "--duration", "2", "--rounds", "1"],
    "snapshot.py": ["--contracts", "200", "--snapshots", "2", "--skip-pandas"],
    "pipeline.py": [
        *("--instruments", "300", "--session-seconds", "5", "--rounds", "1"),
        *("--rate", "200", "--latency-seconds", "1", "--low-rate", "0"),
        *("--broker", "tansu"),
    ],
    "signal_quality.py": ["--sessions", "1", "--instruments", "300", "--duration", "120"],
    "determinism.py": ["--count", "1", "--seed", "1"],
    "fuzz_ingest.py": ["--mutants", "50", "--instruments", "300", "--duration", "2"],
    "fuzz_scan.py": ["--cases", "20", "--seed", "1"],
    "metrics_cost.py": ["--instruments", "300", "--session-seconds", "5", "--rounds", "1"],
}
TIMEOUT_S = 600  # a generous cap for a loaded 2-core box; the scripts take ~5-30 s each


@pytest.fixture(scope="module")
def results():
    """Each script's parsed JSON output: all started at once, each awaited."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(BENCHMARKS / name), "--json", *args],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in SCRIPTS.items()
    }
    out: dict[str, dict] = {}
    try:
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
            assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{stderr[-3000:]}"
            lines = [line for line in stdout.splitlines() if line.strip()]
            out[name] = json.loads(lines[-1])
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return out


def _positive(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_every_benchmark_script_is_listed():
    scripts = {p.name for p in BENCHMARKS.glob("*.py")}
    assert scripts == set(SCRIPTS) | SUPPORT | BY_HAND


def test_kernels(results):
    r = results["kernels.py"]
    assert (r["n_contracts"], r["ticks_timed"]) == (200, 200)
    for grid in ("g200", "g1000"):
        for key in ("per_tick_us", "single_tick_call_us", "full_rebuild_ms", "levels_ms"):
            assert _positive(r[f"{key}_{grid}"]), (key, grid)
        assert 0 <= r[f"max_rel_diff_vs_numpy_{grid}"] < 1e-9  # incremental == full recompute
    assert _positive(r["numpy_full_recompute_per_tick_ms"]) and _positive(r["speedup_vs_numpy"])
    assert set(r["targets_met"]) == {"per_tick_us_g200", "speedup_vs_numpy", "full_rebuild_ms_g200"}
    assert all(isinstance(v, bool) for v in r["targets_met"].values())


def test_deribit_ingest(results):
    r = results["deribit_ingest.py"]
    assert (r["n_instruments"], r["rounds"], r["dead_letters"]) == (300, 1, 0)
    assert 0 < r["ticker_messages"] <= r["messages"]
    assert r["records_produced"] > 0 and r["kafka_batches"] > 0
    for key in ("messages_per_s", "ticker_messages_per_s", "plain_json_messages_per_s"):
        assert _positive(r[key]), key
    assert math.isclose(
        r["ratio_vs_plain_json"], r["messages_per_s"] / r["plain_json_messages_per_s"]
    )
    assert isinstance(r["target_met"], bool)


def test_snapshot(results):
    r = results["snapshot.py"]
    assert r["contracts"] == 200 and r["document_bytes"] > 0
    first = r["first_snapshot_stages"]
    assert first["rows_sent"] == 200  # the cold snapshot sends every contract
    assert r["first_snapshot_ms"] == first["total_ms"]
    assert all(first[k] >= 0 for k in first if k.endswith("_ms"))
    assert _positive(r["snapshot_ms"]) and r["snapshot_ms"] <= r["snapshot_ms_p90"]
    assert 0 <= r["stages_median"]["rows_sent"] <= 200  # steady snapshots send the diff only
    levels = r["last_levels"]
    assert levels["contracts_used"] == 200
    assert all(_positive(levels[k]) for k in ("zero_gamma", "call_wall", "put_wall"))


def test_pipeline(results):
    r = results["pipeline.py"]
    assert r["broker"] == "tansu"
    config, throughput, latency = r["config"], r["throughput"], r["latency"]
    assert (config["instruments"], config["rounds"], config["latency_rate"]) == (300, 1, 200.0)
    assert throughput["ticks"] == config["ticks"] > 0
    assert throughput["records"] == config["records"] == sum(config["record_mix"].values())
    # commits and levels written within the tiny run's window depend on its timing
    # (commit_interval_s); the benchmark itself fails when a checkpoint is not written.
    assert _positive(r["ticks_per_s"]) and _positive(r["decode_only_ticks_per_s"])
    assert latency["ticks"] == 200  # rate × seconds
    assert 0 < latency["p50_ms"] <= latency["p90_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    assert r["p99_ms_at_30k"] == latency["p99_ms"] and r["latency_low_rate"] is None
    assert all(isinstance(v, bool) for v in r["targets_met"].values())
    dashboard = r["dashboard"]  # each round again with a dashboard page connected
    assert len(dashboard["rounds_ticks_per_s_with_page"]) == 1
    assert dashboard["ticks_per_s_without"] == r["ticks_per_s"]
    (page,) = dashboard["page_messages"]
    assert page["tape"] == 1 and page["status"] >= 1


def test_determinism(results):
    r = results["determinism.py"]
    assert (r["cases_tried"], r["cases_equal"], r["unequal"], r["seed"]) == (1, 1, [], 1)
    assert _positive(r["elapsed_s"])


def test_fuzz_ingest(results):
    r = results["fuzz_ingest.py"]
    # the session and its mutants are fixed by the arguments: the same counts every run
    assert (r["messages"], r["mutants"], r["rounds"]) == (712, 158, 1)
    assert (r["invalid_mutants"], r["harmless_mutants"]) == (136, 22)
    assert r["dead_letters"] == sum(r["dead_letters_by_class"].values()) == r["invalid_mutants"]
    assert sum(r["mutants_by_kind"].values()) == r["mutants"]
    assert (r["accepted_invalid"], r["rejected_valid"], r["crashes"]) == (0, 0, 0)
    assert (r["rounds_with_changed_records"], r["clean_session_dead_letters"]) == (0, 0)
    assert _positive(r["messages_per_s"]) and _positive(r["plain_json_messages_per_s"])
    assert math.isclose(
        r["ratio_vs_plain_json"], r["messages_per_s"] / r["plain_json_messages_per_s"]
    )
    assert r["ok"] is True


def test_fuzz_scan(results):
    r = results["fuzz_scan.py"]
    assert (r["boundscheck"], r["seed"], r["cases"]) == (True, 1, 25)
    assert (r["out_of_bounds"], r["crashes"], r["disagreements"], r["failures"]) == (0, 0, 0, [])
    assert (r["accepted"], r["fell_back"], r["accepted_orjson_rejects"]) == (9, 16, 0)
    assert r["unmutated_accepted"] is True


def test_metrics_cost(results):
    r = results["metrics_cost.py"]
    assert r["rounds"] == 1 and r["ticks"] > 0 and r["records"] > 0
    assert len(r["off_runs_ticks_per_s"]) == len(r["on_runs_ticks_per_s"]) == 1
    assert _positive(r["off_ticks_per_s"]) and _positive(r["on_ticks_per_s"])
    assert math.isclose(r["ratio_on_vs_off"], r["on_ticks_per_s"] / r["off_ticks_per_s"])
    assert math.isclose(r["cost"], 1 - r["ratio_on_vs_off"])
    assert _positive(r["off_cpu_us_per_tick"]) and _positive(r["on_cpu_us_per_tick"])
    assert r["exposition_bytes"] > 0  # the on run's last scrape
    assert isinstance(r["target_met"], bool)


def test_signal_quality(results):
    r = results["signal_quality.py"]
    assert (r["sessions"], r["instruments"], r["duration_s"]) == (1, [300], 120.0)
    for side in ("after", "before"):
        assert set(r[side]) == {"flip_cross", "call_wall_break", "put_wall_break"}
        for figures in r[side].values():
            assert figures["detected"] <= figures["true_crossings"]
            assert figures["detected"] + figures["false_events"] <= figures["events"]
    assert set(r["events_per_bucket_after"]) == {"all", "0dte", "front"}
    assert len(r["sweep_band_dwell"]) == 9 and len(r["sweep_level_shift_per_hour"]) == 3


def test_a_bad_size_is_one_line_not_a_traceback():
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "fuzz_ingest.py"), "--instruments", "50"],
        check=False,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (
        "fuzz_ingest.py: error: n_instruments must be an integer in [300, 10000], got 50\n"
    )
