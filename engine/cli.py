"""`regime-engine` command line (DESIGN §2.2)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Sequence
from typing import NoReturn

import orjson
from aiokafka.errors import KafkaError

from connectors.cboe.parse import parse_cboe_json
from connectors.chain_files import CHAIN_FORMATS, ChainFileError, load_chain_file
from connectors.deribit.client import DeribitConfig
from connectors.errors import ParseError
from connectors.kafka.embedded import EmbeddedKafkaError
from connectors.kafka.producer import DeliveryError, ProducerConfig, ProducerStartError
from connectors.record import record_deribit
from connectors.run_ingest import IngestReport, run_ingest
from connectors.simulator.chains import spx_like_chain, to_cboe_delayed_quotes
from connectors.sources import SourceError, parse_source
from engine.book import GammaBook
from engine.config import GAMMA_SOURCES, PRESETS, ConfigError, LevelsConfig, resolve_config
from engine.feed import levels_from_capture
from engine.levels import compute_levels
from engine.logs import configure_logging, get_logger
from engine.models import MODELS
from schemas.chain import ChainSnapshot
from schemas.levels import BUCKETS, Levels
from schemas.topics import Topics

EXIT_USAGE = 2
CAPTURE_FORMAT = "capture"


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
    levels.add_argument(
        "--format", required=True, choices=(*CHAIN_FORMATS, CAPTURE_FORMAT), dest="fmt"
    )
    levels.add_argument("--preset", choices=tuple(PRESETS), default=None)
    levels.add_argument("--model", choices=MODELS, default=None)
    levels.add_argument("--gamma-source", choices=GAMMA_SOURCES, default=None)
    levels.add_argument("--json", action="store_true", help="print the levels JSON object")

    record = commands.add_parser("record", help="capture raw venue messages to a capture file")
    record.add_argument("--source", action="append", required=True, help="e.g. deribit:BTC")
    record.add_argument("--out", required=True, help="capture file to append to")
    record.add_argument("--url", default=None, help="venue WebSocket URL (testnet, a local fake)")
    record.add_argument("--duration", type=float, default=None, help="stop after this many seconds")

    ingest = commands.add_parser("ingest", help="connectors → Kafka (the ingest half of run)")
    ingest.add_argument("--source", action="append", required=True, help="deribit:BTC, replay:PATH")
    ingest.add_argument("--kafka", required=True, help="bootstrap HOST:PORT")
    ingest.add_argument("--topic-prefix", default="")
    ingest.add_argument(
        "--no-idempotence",
        action="store_true",
        help="plain acks=all producer (for brokers without InitProducerId, e.g. the embedded one)",
    )
    ingest.add_argument("--url", default=None, help="Deribit WebSocket URL (testnet, a local fake)")

    demo = commands.add_parser("demo", help="levels of the bundled synthetic SPX chain")
    demo.add_argument("--contracts", type=int, default=2_000, help="chain size (default 2000)")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--json", action="store_true")
    return parser


def levels_of(snapshot: ChainSnapshot, config: LevelsConfig) -> Levels:
    """Levels of a complete chain snapshot, as of its own time."""
    book = GammaBook(
        snapshot.underlying,
        snapshot.venue,
        config,
        snapshot.spot,
        snapshot.asof_ns,
        capacity=len(snapshot.contracts),
    )
    book.load(snapshot)
    book.ts_event_ns = snapshot.asof_ns
    return compute_levels(book)


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
            notes.append(f"note: no zero-gamma crossing within the grid range for '{name}'")
    return "\n".join([*lines, "", *notes] if notes else lines)


def _cmd_levels(args: argparse.Namespace) -> int:
    config = resolve_config(args.preset, args.model, args.gamma_source)
    if args.fmt == CAPTURE_FORMAT:
        try:
            all_levels = levels_from_capture(args.file, config)
        except (OSError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        for levels in all_levels:
            _print_levels(levels, args.json)
        return 0
    snapshot = load_chain_file(args.file, args.fmt)
    levels = levels_of(snapshot, config)
    if levels.contracts_used == 0:
        raise UsageError(f"{args.file}: no unexpired contracts with a usable gamma in the chain")
    _print_levels(levels, args.json)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.contracts < 4:
        raise UsageError("--contracts must be at least 4")
    log = get_logger("demo")
    started = time.perf_counter()
    chain = spx_like_chain(args.contracts, seed=args.seed)
    document = orjson.dumps(to_cboe_delayed_quotes(chain))
    snapshot = parse_cboe_json(document, recv_ns=time.time_ns())
    levels = levels_of(snapshot, resolve_config())
    log.info(
        "demo levels computed",
        contracts=len(snapshot.contracts),
        document_bytes=len(document),
        elapsed_ms=round((time.perf_counter() - started) * 1e3, 1),
    )
    if not args.json:
        print(
            f"Bundled synthetic SPX chain (seed {args.seed}): {len(snapshot.contracts)} "
            "contracts, rendered as a CBOE delayed-quotes document and parsed back.\n"
        )
    _print_levels(levels, args.json)
    return 0


def _cmd_record(args: argparse.Namespace) -> int:
    sources = [parse_source(spec) for spec in args.source]
    if any(s.kind != "deribit" for s in sources):
        raise UsageError("record supports deribit:BTC / deribit:ETH sources")
    if args.duration is not None and args.duration <= 0:
        raise UsageError("--duration must be positive")
    currencies = tuple(dict.fromkeys(s.target for s in sources))
    config = DeribitConfig(currencies=currencies, **({"url": args.url} if args.url else {}))
    count = asyncio.run(record_deribit(config, args.out, args.duration))
    print(f"recorded {count} messages to {args.out}", file=sys.stderr)
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    sources = [parse_source(spec) for spec in args.source]
    host, _, port = args.kafka.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--kafka must be HOST:PORT, got {args.kafka!r}")
    producer = ProducerConfig(bootstrap=args.kafka, enable_idempotence=not args.no_idempotence)
    deribit = DeribitConfig(url=args.url) if args.url else None

    async def run() -> IngestReport:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await run_ingest(sources, producer, Topics(args.topic_prefix), stop, deribit)

    try:
        report = asyncio.run(run())
    except (KafkaError, ProducerStartError, DeliveryError, EmbeddedKafkaError, OSError) as exc:
        raise UsageError(f"kafka {args.kafka}: {exc}") from None
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
            "demo": _cmd_demo,
            "record": _cmd_record,
            "ingest": _cmd_ingest,
        }[args.command]
        return handler(args)
    except (UsageError, ChainFileError, ConfigError, ParseError, SourceError) as exc:
        message = " ".join(str(exc).split("\n"))
        print(f"regime-engine: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
