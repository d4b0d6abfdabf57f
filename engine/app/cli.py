"""`regime-engine` command line (DESIGN §2.2)."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import orjson
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from connectors.chain_files import ChainFileError
from connectors.common.errors import ParseError
from connectors.common.kafka.embedded import EmbeddedKafkaError
from connectors.common.kafka.producer import DeliveryError, ProducerConfig, ProducerStartError
from connectors.common.kafka.security import KafkaSecurity, connection_failure
from connectors.common.lifecycle import cancel_and_wait
from connectors.common.logs import configure_logging
from connectors.common.redis_conn import failure_line, permanent_cause
from connectors.common.redis_embedded import EmbeddedRedisError
from connectors.common.secrets import redact_text
from connectors.common.signals import run_until_signal
from connectors.registry import SPECS
from connectors.sources import REPLAY, Source, SourceError, parse_source
from connectors.venues import locate
from engine.app.alert import FORMATS as ALERT_FORMATS
from engine.app.alert import AlertConfig, run_alerts
from engine.app.chain_books import FORMATS, book_of, load_books
from engine.app.chart_data import KINDS, charts_of
from engine.app.chart_render import OUT_SUFFIXES, render
from engine.app.dashboard import DashboardConfig
from engine.app.dashboard import serve as serve_dashboard
from engine.app.demo import (
    DemoConfig,
    DemoSummary,
    PlainView,
    RichView,
    StatusView,
    describe_event,
    render_summary,
    run_demo,
)
from engine.app.metrics import EngineMetrics, MetricsCollector, serve_metrics
from engine.app.record import record_sources
from engine.app.run_ingest import IngestReport, IngestView, run_ingest
from engine.app.run_live import announcement, run_live
from engine.app.services import BROKERS, DEFAULT_BROKER, Embedding, LocalServices
from engine.app.settings import Settings, load_settings
from engine.client.subscriber import RegimeSubscriber, SubscriberConfig
from engine.core.config import GAMMA_SOURCES, PRESETS, ConfigError, LevelsConfig, resolve_config
from engine.core.levels import compute_levels
from engine.core.models import MODELS
from engine.stream.runtime import EngineReport, EngineRuntime
from schemas.chain import ChainSnapshot
from schemas.config import Config
from schemas.events import encode_event
from schemas.levels import BUCKETS, Levels
from schemas.topics import Topics

SOURCE_HELP = ", ".join((*(spec.example for spec in SPECS), f"{REPLAY}:PATH"))
URL_HELP = (
    f"{', '.join(s.venue for s in SPECS if s.url_flag)} WebSocket URL (testnet, a local fake)"
)
TABLES_HELP = f"TOML file ({', '.join(f'[{spec.table}]' for spec in SPECS)})"

EXIT_USAGE = 2
EXIT_SIGNAL = 130
# After SIGINT / SIGTERM, how long a command may take to stop on its own (the engine's last
# commit) before it is cancelled; its connects and retries end at once on the signal.
STOP_GRACE_S = 10.0
T = TypeVar("T")


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="regime-engine",
        description="Dealer-gamma levels and regime events from options positioning.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    levels = commands.add_parser("levels", help="one-shot levels from a chain file")
    levels.add_argument("file", help="chain file")
    levels.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
    levels.add_argument("--preset", choices=tuple(PRESETS), default=None)
    levels.add_argument("--model", choices=MODELS, default=None)
    levels.add_argument("--gamma-source", choices=GAMMA_SOURCES, default=None)
    levels.add_argument("--json", action="store_true", help="print the levels JSON object")

    chart = commands.add_parser("chart", help="gamma profile, strike bars, heatmap to a file")
    chart.add_argument("file", help="chain file")
    chart.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
    chart.add_argument("--kind", choices=(*KINDS, "all"), default="all")
    chart.add_argument("--bucket", choices=BUCKETS, default="all")
    chart.add_argument("--preset", choices=tuple(PRESETS), default=None)
    chart.add_argument("--model", choices=MODELS, default=None)
    chart.add_argument("--gamma-source", choices=GAMMA_SOURCES, default=None)
    chart.add_argument("--underlying", default=None, help="which one, when the file has several")
    chart.add_argument("--out", required=True, help="PATH.png, PATH.svg or PATH.html")

    record = commands.add_parser("record", help="capture raw venue messages to a capture file")
    record.add_argument("--source", action="append", required=True, help="e.g. deribit:BTC")
    record.add_argument("--out", required=True, help="capture file to append to")
    record.add_argument("--url", default=None, help=URL_HELP)
    record.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    record.add_argument("--config", default=None, help=TABLES_HELP)

    ingest = commands.add_parser("ingest", help="connectors → Kafka (the ingest half of run)")
    ingest.add_argument("--source", action="append", required=True, help=SOURCE_HELP)
    ingest.add_argument("--kafka", required=True, help="bootstrap HOST:PORT")
    ingest.add_argument("--topic-prefix", default="")
    ingest.add_argument(
        "--no-idempotence",
        action="store_true",
        help="plain acks=all producer (for brokers without InitProducerId, e.g. the embedded one)",
    )
    ingest.add_argument("--url", default=None, help=URL_HELP)
    ingest.add_argument("--config", default=None, help=TABLES_HELP)
    _add_pace_flags(ingest)
    _add_metrics_flag(ingest)

    demo = commands.add_parser(
        "demo", help="the pipeline on the embedded default, on a simulated Deribit session"
    )
    _add_service_flags(demo, required=False)
    demo.add_argument("--speed", type=float, default=30.0, help="replay pace, x real time")
    demo.add_argument("--max-speed", action="store_true", help="replay as fast as possible")
    demo.add_argument("--instruments", type=int, default=600, help="options in the session")
    demo.add_argument("--duration", type=float, default=300.0, help="simulated seconds")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_embed_flags(demo)
    demo.add_argument(
        "--dashboard",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve the live dashboard too (default: on a terminal), kept up until Ctrl-C there",
    )
    demo.add_argument("--dashboard-port", type=int, default=8765, help="0: a free port")

    engine = commands.add_parser("engine", help="Kafka → engine → Redis (the engine half of run)")
    _add_service_flags(engine, required=True)
    _add_metrics_flag(engine)

    run = commands.add_parser("run", help="connectors + engine + publisher in one process")
    run.add_argument("--source", action="append", required=True, help=SOURCE_HELP)
    _add_service_flags(run, required=False)
    _add_embed_flags(run)
    run.add_argument("--url", default=None, help=URL_HELP)
    _add_pace_flags(run)
    run.add_argument("--quiet", action="store_true", help="log lines only, no live view")
    _add_metrics_flag(run)

    dashboard = commands.add_parser("dashboard", help="live page (Server-Sent Events from Redis)")
    dashboard.add_argument("--redis", default=None, help="redis://HOST:PORT/DB")
    dashboard.add_argument("--host", default="127.0.0.1")
    dashboard.add_argument("--port", type=int, default=8765, help="0: a free port")
    dashboard.add_argument(
        "--stale-after", type=float, default=30.0, help="warn after S seconds without new levels"
    )
    _add_redis_security_flags(dashboard)

    subscribe = commands.add_parser("subscribe", help="print regime events as they arrive")
    subscribe.add_argument("--underlying", action="append", default=None, help="e.g. BTC, SPX")
    subscribe.add_argument("--redis", default=None, help="redis://HOST:PORT/DB")
    subscribe.add_argument(
        "--from", dest="start", default="$", help="0 (retained stream), $ (new only), or an id"
    )
    subscribe.add_argument("--count", type=int, default=None, help="exit after N events")
    subscribe.add_argument("--json", action="store_true", help="event JSON lines")
    _add_redis_security_flags(subscribe)

    alert = commands.add_parser("alert", help="POST regime events to a webhook")
    alert.add_argument("--redis", default=None, help="redis://HOST:PORT/DB")
    alert.add_argument("--webhook", required=True, help="http(s):// URL to POST each event to")
    alert.add_argument("--format", choices=ALERT_FORMATS, default="json", dest="fmt")
    alert.add_argument("--underlying", action="append", default=None, help="e.g. BTC, SPX")
    alert.add_argument("--type", action="append", default=None, help="e.g. flip_cross,…")
    alert.add_argument("--bucket", action="append", default=None, help="e.g. 0dte,front")
    alert.add_argument("--group", default="default", help="names the resume point")
    alert.add_argument(
        "--from", dest="start", default="$", help="a new group: 0 (retained stream) or $ (new)"
    )
    _add_redis_security_flags(alert)
    return parser


def _add_metrics_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus /metrics, /healthz, /readyz on this port ([metrics] port)",
    )


def _add_redis_security_flags(parser: argparse.ArgumentParser) -> None:
    """TLS files and the ACL user (the password: in the URL, REGIME_ENGINE_REDIS_PASSWORD or
    a file, never a flag)."""
    group = parser.add_argument_group("Redis security (rediss:// URLs, ACL users)")
    group.add_argument("--redis-user", default=None, help="ACL user (overrides the URL's)")
    group.add_argument("--redis-password-file", default=None, help="file holding the password")
    group.add_argument("--redis-ca-file", default=None, help="CA certificate (PEM) to trust")
    group.add_argument("--redis-cert-file", default=None, help="client certificate (PEM)")
    group.add_argument("--redis-key-file", default=None, help="client key (PEM)")
    group.add_argument(
        "--redis-no-check-hostname",
        action="store_const",
        const=False,
        default=None,
        help="accept a server certificate issued for another name",
    )


def _redis_security_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "username": args.redis_user,
        "password_file": args.redis_password_file,
        "ca_file": args.redis_ca_file,
        "cert_file": args.redis_cert_file,
        "key_file": args.redis_key_file,
        "check_hostname": args.redis_no_check_hostname,
    }


def _add_service_flags(parser: argparse.ArgumentParser, required: bool) -> None:
    what = "" if required else " (default: start a local one)"
    parser.add_argument("--kafka", default=None, help=f"Kafka bootstrap HOST:PORT{what}")
    parser.add_argument("--redis", default=None, help=f"Redis URL redis://HOST:PORT/DB{what}")
    parser.add_argument("--config", default=None, help="TOML config file")
    parser.add_argument("--topic-prefix", default=None)
    parser.add_argument("--group", default=None, dest="group_id", help="consumer group id")
    parser.add_argument("--model", choices=MODELS, default=None)
    parser.add_argument("--preset", choices=tuple(PRESETS), default=None)
    parser.add_argument(
        "--no-idempotence",
        action="store_const",
        const=False,
        dest="idempotence",
        help="plain acks=all producer (brokers without InitProducerId, e.g. Tansu)",
    )
    _add_redis_security_flags(parser)


def _add_embed_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--broker",
        choices=BROKERS,
        default=DEFAULT_BROKER,
        help="the embedded broker started when no --kafka is given",
    )
    parser.add_argument("--kafka-port", type=int, default=None, help="embedded broker's port")
    parser.add_argument("--redis-port", type=int, default=None, help="embedded Redis's port")


def _embedding(args: argparse.Namespace, settings: Settings) -> Embedding:
    """``--broker`` and the embedded services' ports (not with a given service)."""
    if settings.kafka is not None and args.broker != DEFAULT_BROKER:
        raise UsageError("--broker chooses the embedded broker: not with a given Kafka")
    for name, port in (("kafka", args.kafka_port), ("redis", args.redis_port)):
        if port is not None and getattr(settings, name) is not None:
            raise UsageError(
                f"--{name}-port is the embedded {name}'s port, but a {name} is given "
                f"({getattr(settings, name)})"
            )
    try:
        return Embedding(args.broker, args.kafka_port, args.redis_port)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _add_pace_flags(parser: argparse.ArgumentParser) -> None:
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed", type=float, default=None, help="pace of replay: sources, x recorded time"
    )
    pace.add_argument(
        "--max-speed", action="store_true", help="replay as fast as possible (the default)"
    )


def _replay_speed(args: argparse.Namespace, sources: Sequence[Source]) -> float | None:
    """``--speed`` for the replay sources (None: as fast as possible)."""
    if args.speed is None:
        return None
    if not args.speed > 0:
        raise UsageError(f"--speed must be positive, got {args.speed:g}")
    if not any(s.kind == REPLAY for s in sources):
        raise UsageError("--speed paces replay: sources; none is given")
    return float(args.speed)


def _settings(args: argparse.Namespace, env: dict[str, str], required: bool) -> Settings:
    flags = {
        name: getattr(args, name, None)
        for name in ("kafka", "redis", "topic_prefix", "group_id", "idempotence", "model", "preset")
    }
    flags["redis_security"] = _redis_security_flags(args)
    flags["metrics_port"] = getattr(args, "metrics_port", None)
    settings = load_settings(flags, env, args.config)
    if required and (settings.kafka is None or settings.redis is None):
        missing = [n for n in ("kafka", "redis") if getattr(settings, n) is None]
        raise UsageError(
            f"{args.command} needs --{' and --'.join(missing)} (or REGIME_ENGINE_KAFKA / "
            "REGIME_ENGINE_REDIS, or the config file)"
        )
    return settings


def levels_of(snapshot: ChainSnapshot, config: LevelsConfig) -> Levels:
    """Levels of a complete chain snapshot, as of its own time."""
    return compute_levels(book_of(snapshot, config))


def _fmt_money(value: float) -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale:
            return f"{value / scale:+.2f} {suffix}"
    return f"{value:+.2f}"


def _fmt_level(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render_table(levels: Levels) -> str:
    """Readable multi-line view of a levels object."""
    lines = [
        f"{levels.underlying}  spot {levels.spot:.2f}  asof {levels.to_dict()['asof']}",
        f"model {levels.model}  preset {levels.preset or '-'}  gamma {levels.gamma_source}"
        "  GEX in USD per 1% move",
        "",
        f"{'bucket':<7}{'net GEX':>12}{'zero gamma':>12}{'call wall':>11}{'put wall':>10}"
        f"{'abs gamma':>11}  {'regime':<11}{'contracts':>9}{'expiries':>9}",
    ]
    notes = []
    for name in BUCKETS:
        b = levels.buckets[name]
        lines.append(
            f"{name:<7}{_fmt_money(b.net_gex):>12}{_fmt_level(b.zero_gamma):>12}"
            f"{_fmt_level(b.call_wall):>11}{_fmt_level(b.put_wall):>10}"
            f"{_fmt_level(b.abs_gamma_strike):>11}  {b.regime or '-':<11}"
            f"{b.contracts_used:>9}{len(b.expiries):>9}"
        )
        if len(b.zero_gamma_crossings) > 1:
            roots = ", ".join(f"{r:.2f}" for r in b.zero_gamma_crossings)
            rule = "first sign change" if levels.preset == "perfiliev" else "nearest to spot"
            notes.append(
                f"note: {len(b.zero_gamma_crossings)} zero-gamma crossings in range for "
                f"'{name}': {roots} (zero gamma = {rule})"
            )
        elif b.contracts_used and not b.zero_gamma_crossings:
            searched = b.zero_gamma_range or (math.nan, math.nan)
            notes.append(
                f"note: no zero-gamma crossing for '{name}' in {searched[0]:.2f}..{searched[1]:.2f}"
                " (zero_gamma_status none_in_range)"
            )
    lines += [
        "",
        f"{'bucket':<7}{'call OI':>10}{'put OI':>10}{'net DEX':>12}{'net VEX':>12}"
        f"{'net CHEX':>12}  {'zero gamma status':<18}{'same as':<8}",
    ]
    for name in BUCKETS:
        b = levels.buckets[name]
        lines.append(
            f"{name:<7}{_fmt_level(b.call_wall_oi):>10}{_fmt_level(b.put_wall_oi):>10}"
            f"{_fmt_money(b.net_dex):>12}{_fmt_money(b.net_vex):>12}{_fmt_money(b.net_chex):>12}"
            f"  {b.zero_gamma_status or '-':<18}{b.same_as or '-':<8}"
        )
    lines.append(
        f"walls: {levels.wall_rule} rule; DEX in USD, VEX in USD per vol point, CHEX in USD per day"
    )
    return "\n".join([*lines, "", *notes] if notes else lines)


def _cmd_levels(args: argparse.Namespace, env: dict[str, str]) -> int:
    config = resolve_config(args.preset, args.model, args.gamma_source)
    for loaded in load_books(args.file, args.fmt, config):
        _print_levels(loaded.levels, args.json)
    return 0


def _cmd_chart(args: argparse.Namespace, env: dict[str, str]) -> int:
    out = Path(args.out)
    if out.suffix not in OUT_SUFFIXES:
        raise UsageError(f"--out must end in {', '.join(OUT_SUFFIXES)}, got {args.out!r}")
    config = resolve_config(args.preset, args.model, args.gamma_source)
    loaded = {item.levels.underlying: item for item in load_books(args.file, args.fmt, config)}
    name = args.underlying or (next(iter(loaded)) if len(loaded) == 1 else None)
    if name not in loaded:
        what = f"no {args.underlying!r}" if args.underlying else "several underlyings"
        raise UsageError(f"{args.file}: {what}; --underlying one of {', '.join(loaded)}")
    book, levels = loaded[name].book, loaded[name].levels
    if levels.buckets[args.bucket].contracts_used == 0:
        raise UsageError(f"{args.file}: bucket {args.bucket!r} has no contracts")
    kinds = KINDS if args.kind == "all" else (args.kind,)
    charts = charts_of(book, levels, kinds, args.bucket)
    try:
        render(charts, out, title=f"{name} {args.kind} [{args.bucket}]")
    except OSError as exc:
        raise UsageError(f"{args.out}: {exc.strerror or exc}") from None
    print(f"wrote {', '.join(kinds)} chart of {name} [{args.bucket}] to {out}", file=sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace, env: dict[str, str]) -> int:
    settings = _settings(args, env, required=False)
    terminal = sys.stdout.isatty() and not args.json
    dashboard = terminal if args.dashboard is None else args.dashboard
    try:
        demo = DemoConfig(
            instruments=args.instruments,
            duration_s=args.duration,
            seed=args.seed,
            speed=None if args.max_speed else args.speed,
            dashboard_port=args.dashboard_port if dashboard else None,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    view = PlainView() if (args.plain or args.json or not sys.stdout.isatty()) else RichView()
    if args.json:
        view = PlainView(out=sys.stderr)

    async def show(summary: DemoSummary) -> None:
        if args.json:
            sys.stdout.write(orjson.dumps(summary.to_dict()).decode() + "\n")
        else:
            print(render_summary(summary))
        sys.stdout.flush()
        if summary.dashboard and terminal:  # kept up for a person to look at
            print(f"dashboard still up at {summary.dashboard}; Ctrl-C to stop", file=sys.stderr)
            await _until_signal(lambda stop: stop.wait())

    summary = _run_services(
        run_demo(settings, demo, view, _embedding(args, settings), linger=show), settings
    )
    if not summary.shows_flip_and_break:
        print("regime-engine: demo: no flip crossing or no wall break was seen", file=sys.stderr)
        return 1
    return 0


def _run_services(coro: Coroutine[Any, Any, T], settings: Settings) -> T:
    """Run a coroutine that talks to Kafka and Redis; their failures become one line."""
    try:
        return asyncio.run(coro)
    except (KafkaError, ProducerStartError, DeliveryError, EmbeddedKafkaError) as exc:
        raise UsageError(_kafka_failure(settings.kafka, settings.kafka_security, exc)) from None
    except (RedisError, EmbeddedRedisError) as exc:
        cause = permanent_cause(exc) or _one_line(exc)
        raise UsageError(failure_line(settings.redis or "embedded", cause)) from None
    except (OSError, TimeoutError, RuntimeError) as exc:
        raise UsageError(_one_line(exc)) from None


def _kafka_failure(bootstrap: str | None, security: KafkaSecurity, exc: BaseException) -> str:
    """``kafka HOST:PORT: cause``; a TLS or SASL failure named (aiokafka only says it could
    not bootstrap)."""
    if bootstrap is None:
        return f"kafka embedded: {_one_line(exc)}"
    cause = asyncio.run(connection_failure(bootstrap, security))
    return f"kafka {bootstrap}: {cause or _one_line(exc)}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return redact_text(text or type(exc).__name__)


async def _until_signal(
    main: Callable[[asyncio.Event], Awaitable[T]], grace_s: float = STOP_GRACE_S
) -> T | None:
    """Run ``main(stop)``; SIGINT / SIGTERM set ``stop``. A command that has not ended
    ``grace_s`` after the signal (stuck in a connect or a retry), or a second signal, cancels
    it (again and again: a client may swallow one cancel); it then returns None."""
    return await run_until_signal(main, grace_s)


def _cmd_engine(args: argparse.Namespace, env: dict[str, str]) -> int:
    settings = _settings(args, env, required=True)
    config = settings.engine_config(settings.kafka, settings.redis, embedded_kafka=False)
    meter = EngineMetrics() if settings.metrics.port is not None else None
    runtime = EngineRuntime(config, on_batch=meter and meter.on_batch, instrumentation=meter)

    async def engine(stop: asyncio.Event) -> EngineReport:
        collector = MetricsCollector(meter, runtime, config=settings.metrics)
        async with serve_metrics(settings.metrics, collector):
            return await runtime.run(stop)

    report = _run_services(_until_signal(engine), settings)
    if report is None:
        return _stopped("engine")
    print(f"engine: {orjson.dumps(report.to_dict()).decode()}", file=sys.stderr)
    return 0


def _stopped(command: str) -> int:
    print(
        f"regime-engine: {command}: stopped by a signal before a clean shutdown "
        "(nothing was committed past what was written)",
        file=sys.stderr,
    )
    return EXIT_SIGNAL


def _cmd_run(args: argparse.Namespace, env: dict[str, str]) -> int:
    settings = _settings(args, env, required=False)
    sources = [parse_source(spec) for spec in args.source]
    speed = _replay_speed(args, sources)
    embed = _embedding(args, settings)
    venues = _venue_configs(settings, sources, args.url)
    follow = not args.quiet and sys.stdout.isatty()
    view = RichView() if follow else StatusView()

    def announce(local: LocalServices) -> None:
        print(announcement(local), flush=True)

    def main(stop: asyncio.Event) -> Awaitable[tuple[IngestReport, EngineReport]]:
        return run_live(
            settings,
            sources,
            venues,
            stop,
            view,
            follow=follow,
            embed=embed,
            replay_speed=speed,
            announce=announce,
        )

    result = _run_services(_until_signal(main), settings)
    if result is None:
        return _stopped("run")
    ingest, report = result
    print(
        f"run: ingested {ingest.counts['records']} records; engine: "
        f"{orjson.dumps(report.to_dict()).decode()}",
        file=sys.stderr,
    )
    return 0


def _cmd_subscribe(args: argparse.Namespace, env: dict[str, str]) -> int:
    settings, redis_url = _redis_settings(args, env, "subscribe")
    if args.count is not None and args.count <= 0:
        raise UsageError("--count must be positive")
    try:
        config = SubscriberConfig(
            redis_url=redis_url,
            underlyings=tuple(args.underlying) if args.underlying else None,
            start_id=args.start,
            max_reconnect_attempts=None,
            security=settings.redis_security,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    as_json = args.json or not sys.stdout.isatty()

    async def follow(stop: asyncio.Event) -> int:
        seen = 0
        async with RegimeSubscriber(config) as subscriber:
            stopper = asyncio.create_task(stop.wait())
            try:
                iterator = aiter(subscriber)
                while not stop.is_set():
                    step = asyncio.create_task(anext(iterator))
                    done, _ = await asyncio.wait(
                        {step, stopper}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if step not in done:
                        await cancel_and_wait(step)
                        break
                    delivery = step.result()
                    if as_json:
                        sys.stdout.write(encode_event(delivery.event).decode() + "\n")
                    else:
                        sys.stdout.write(describe_event(delivery.event) + "\n")
                    sys.stdout.flush()
                    seen += 1
                    if args.count is not None and seen >= args.count:
                        break
            except StopAsyncIteration:
                pass
            finally:
                await cancel_and_wait(stopper)
        return seen

    # Nothing to finish on a signal: the subscriber is cancelled at once, in any state.
    _run_services(_until_signal(follow, grace_s=0.0), settings)
    return 0


def _comma_list(values: list[str] | None) -> tuple[str, ...] | None:
    if values is None:
        return None
    return tuple(name.strip() for value in values for name in value.split(",") if name.strip())


def _redis_settings(
    args: argparse.Namespace, env: dict[str, str], command: str
) -> tuple[Settings, str]:
    """The settings of a Redis-only command (subscribe, alert, dashboard) and its Redis URL,
    which it cannot run without (a one-line UsageError)."""
    settings = load_settings(
        {"redis": args.redis, "redis_security": _redis_security_flags(args)}, env
    )
    if not settings.redis:
        raise UsageError(f"{command} needs --redis URL (or REGIME_ENGINE_REDIS)")
    return settings, settings.redis


def _cmd_alert(args: argparse.Namespace, env: dict[str, str]) -> int:
    settings, redis_url = _redis_settings(args, env, "alert")
    config = AlertConfig(
        redis_url=redis_url,
        webhook_url=args.webhook,
        format=args.fmt,
        underlyings=_comma_list(args.underlying),
        types=_comma_list(args.type),
        buckets=_comma_list(args.bucket),
        group=args.group,
        start=args.start,
        security=settings.redis_security,
    )
    report = _run_services(_until_signal(lambda stop: run_alerts(config, stop)), settings)
    if report is None:
        return _stopped("alert")
    print(f"alert: {orjson.dumps(report.to_dict()).decode()}", file=sys.stderr)
    return 0


def _cmd_dashboard(args: argparse.Namespace, env: dict[str, str]) -> int:
    settings, redis_url = _redis_settings(args, env, "dashboard")
    config = DashboardConfig(
        redis_url=redis_url,
        host=args.host,
        port=args.port,
        stale_after_s=args.stale_after,
        security=settings.redis_security,
    )

    def ready(url: str) -> None:
        shown = redact_text(redis_url)
        print(f"dashboard: {url} (reading {shown}; Ctrl-C to stop)", file=sys.stderr)

    _run_services(_until_signal(lambda stop: serve_dashboard(config, stop, ready)), settings)
    return 0


def _venue_configs(settings: Settings, sources: list[Source], url: str | None) -> dict[str, Config]:
    """The venues' tables for run_ingest and record_sources, ``--url`` over its venue's."""
    venues = dict(settings.venues)
    for spec, _ in filter(None, map(locate, sources)):
        if spec.needs_table and spec.venue not in venues:
            raise UsageError(
                f"{spec.prefix} sources need a [{spec.table}] table in the config file "
                f"(--config): {spec.needs_table} (see the README)"
            )
    for spec in SPECS if url else ():
        if spec.url_flag:
            venues[spec.venue] = replace(venues.get(spec.venue) or spec.config(), url=url)
    return venues


def _cmd_record(args: argparse.Namespace, env: dict[str, str]) -> int:
    sources = [parse_source(spec) for spec in args.source]
    if any(s.kind == REPLAY for s in sources):
        raise UsageError("record captures live sources; a replay is already a capture")
    if args.duration is not None and args.duration <= 0:
        raise UsageError("--duration must be positive")
    venues = _venue_configs(load_settings({}, env, args.config), sources, args.url)
    count = asyncio.run(record_sources(sources, args.out, args.duration, venues))
    print(f"recorded {count} messages to {args.out}", file=sys.stderr)
    return 0


def _cmd_ingest(args: argparse.Namespace, env: dict[str, str]) -> int:
    sources = [parse_source(spec) for spec in args.source]
    host, _, port = args.kafka.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--kafka must be HOST:PORT, got {args.kafka!r}")
    settings = load_settings({"metrics_port": args.metrics_port}, env, args.config)
    producer = ProducerConfig(
        bootstrap=args.kafka,
        enable_idempotence=not args.no_idempotence,
        security=settings.kafka_security,
    )
    venues = _venue_configs(settings, sources, args.url)
    speed = _replay_speed(args, sources)

    async def run(stop: asyncio.Event) -> IngestReport:
        view = IngestView()
        collector = MetricsCollector(ingest=view, config=settings.metrics)
        async with serve_metrics(settings.metrics, collector):
            topics = Topics(args.topic_prefix)
            return await run_ingest(
                sources, producer, topics, stop, venues, replay_speed=speed, view=view
            )

    try:
        report = asyncio.run(_until_signal(run))
    except (KafkaError, ProducerStartError, DeliveryError, EmbeddedKafkaError, OSError) as exc:
        raise UsageError(_kafka_failure(args.kafka, settings.kafka_security, exc)) from None
    if report is None:
        return _stopped("ingest")
    counts = report.counts
    print(
        f"ingested {counts['messages']} messages: {counts['records']} records, "
        f"{counts['dead_letters']} dead letters",
        file=sys.stderr,
    )
    return 0


def _print_levels(levels: Levels, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(levels.to_dict()).decode() + "\n")
    else:
        print(render_table(levels))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `regime-engine` console script."""
    configure_logging()
    try:
        args = build_parser().parse_args(argv)
        handler = {
            "levels": _cmd_levels,
            "chart": _cmd_chart,
            "demo": _cmd_demo,
            "record": _cmd_record,
            "ingest": _cmd_ingest,
            "engine": _cmd_engine,
            "run": _cmd_run,
            "subscribe": _cmd_subscribe,
            "alert": _cmd_alert,
            "dashboard": _cmd_dashboard,
        }[args.command]
        return handler(args, dict(os.environ))
    except (UsageError, ChainFileError, ConfigError, ParseError, SourceError) as exc:
        message = redact_text(" ".join(str(exc).split("\n")))
        print(f"regime-engine: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
