"""CBOE bodies (delayed-quotes JSON or download CSV) → ``ChainDelta`` records on md.options.v1.

One normaliser per polling connector: it remembers the previous snapshot of each
underlying, so each body yields only what changed (see :mod:`connectors.common.snapshots`).
"""

from __future__ import annotations

from typing import Any

from connectors.cboe.columns import parse_cboe_json_columns
from connectors.cboe.parse import parse_cboe_csv
from connectors.common.errors import ParseError
from connectors.common.ingest import OPTIONS, RejectedRows, Routed
from connectors.common.snapshots import SnapshotDiffer, SnapshotFramingConfig
from schemas.chain import ChainColumns


def parse_cboe_body(doc: Any, recv_ns: int, rejected: list[str] | None = None) -> ChainColumns:
    """A CBOE body as columns: JSON (bytes, text or decoded) or the download-CSV text.

    With ``rejected``, rows out of their domain are left out and listed there."""
    if isinstance(doc, bytes | bytearray | memoryview):
        text_start = bytes(doc[:64]).lstrip()
        is_json = text_start.startswith(b"{")
    elif isinstance(doc, str):
        is_json = doc.lstrip().startswith("{")
    elif isinstance(doc, dict):
        is_json = True
    else:
        raise ParseError(f"CBOE: expected a JSON document or CSV text, got {type(doc).__name__}")
    if is_json:
        return parse_cboe_json_columns(doc, recv_ns, rejected)
    if isinstance(doc, bytes | bytearray | memoryview):
        try:
            doc = bytes(doc).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ParseError(f"CBOE CSV: not UTF-8 text: {exc}") from None
    if not doc.strip():
        raise ParseError("CBOE: empty body")
    return ChainColumns.from_snapshot(parse_cboe_csv(doc, recv_ns, rejected))


class CboeNormaliser:
    """Parse each polled CBOE body and frame it as changes against the previous one."""

    def __init__(self, framing: SnapshotFramingConfig | None = None) -> None:
        self.differ = SnapshotDiffer(framing or SnapshotFramingConfig())

    def normalise(
        self, doc: Any, recv_ns: int, request: dict[str, Any] | None = None
    ) -> list[Routed]:
        rejected: list[str] = []
        columns = parse_cboe_body(doc, recv_ns, rejected)
        out: list[Routed | RejectedRows] = [
            Routed(OPTIONS, part) for part in self.differ.frame(columns, recv_ns)
        ]
        if rejected:
            out.append(RejectedRows(tuple(rejected), len(columns.instrument)))
        return out
