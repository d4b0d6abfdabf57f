"""deploy/: the Prometheus scrape config and Grafana dashboard match what the processes export;
the compose file's alert service runs a valid `regime-engine alert`."""

import json
import re

from engine.app.alert import AlertConfig
from engine.app.cli import build_parser
from engine.app.metrics import EngineMetrics, MetricsCollector
from engine.app.run_ingest import IngestView
from engine.stream.runtime import EngineConfig, EngineRuntime
from tests.paths import REPO

DEPLOY = REPO / "deploy"
NAME = re.compile(r"\bregime_(?:engine|ingest)_[a-z_]+")


def exported() -> dict[str, str]:
    """Every sample name a process with all three parts can export, by family name."""
    runtime = EngineRuntime(EngineConfig(bootstrap="k:1", redis_url="redis://r"))
    collector = MetricsCollector(EngineMetrics(), runtime, IngestView())
    out = {}
    for family in collector.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
        for suffix in suffixes.get(family.type, ("",)):
            out[family.name + suffix] = family.name
    return out


def test_the_dashboard_queries_only_exported_metrics_and_shows_each_family() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "regime-engine.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in NAME.findall(expr)}
    names = exported()
    assert used <= set(names), sorted(used - set(names))
    shown = {names[n] for n in used}
    # The engine's bookkeeping counters are in the README's table, not on the dashboard.
    quiet = {f"regime_engine_{n}" for n in ("events_replayed", "levels_written", "batches",
             "merge_held_back", "commits", "assignments")}  # fmt: skip
    assert shown == set(names.values()) - quiet
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


def test_the_readme_lists_every_exported_family() -> None:
    readme = (REPO / "README.md").read_text()
    for family in set(exported().values()):
        short = "_" + family.removeprefix("regime_engine_") + "_total"
        assert f"`{family}" in readme or f"`{short}`" in readme, family


def test_prometheus_scrapes_each_process_of_the_compose_file_on_its_metrics_port() -> None:
    compose = (DEPLOY / "docker-compose.yml").read_text()
    serving = {}
    for service, body in re.findall(
        r"^  (\w+):\n((?:    .*\n|              .*\n)*)", compose, re.M
    ):
        port = re.search(r'"--metrics-port", "(\d+)"', body)
        if port:
            serving[service] = port.group(1)
    assert serving == {"ingest": "9100", "engine": "9100"}
    scrape = (DEPLOY / "prometheus.yml").read_text()
    targets = set(re.findall(r'targets: \["([^"]+)"\]', scrape))
    assert targets == {f"{service}:{port}" for service, port in serving.items()}
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml" in compose
    assert "./grafana/regime-engine.json:/var/lib/grafana/dashboards/" in compose


def test_the_compose_alert_service_runs_a_valid_alert_command() -> None:
    compose = (DEPLOY / "docker-compose.yml").read_text()
    body = compose.split("\n  alert:", 1)[1].split("\n  prometheus:", 1)[0]
    flow = body.split("command:", 1)[1].split("\n    depends_on", 1)[0]
    argv = json.loads(flow.replace("${REGIME_ALERT_WEBHOOK:?}", "https://hooks.example/x"))
    args = build_parser().parse_args(argv)
    assert (args.command, args.redis, args.fmt, args.group) == (
        "alert", "rediss://redis:6380/0", "discord", "compose",
    )  # fmt: skip
    types = tuple(args.type[0].split(","))
    config = AlertConfig(args.redis, args.webhook, format=args.fmt, types=types, group=args.group)
    assert config.types == ("flip_cross", "call_wall_break", "put_wall_break", "regime_change")
