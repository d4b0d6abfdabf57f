"""Capture files (DESIGN §2.5): JSON Lines, one line per received venue message.

    {"recv_ns": 1700000000000000000, "venue": "deribit", "msg": {…raw message…}}
    {"recv_ns": …, "venue": "deribit", "request": {"method": …, "params": …}, "msg": {…}}
    {"recv_ns": …, "venue": "cboe", "url": "https://…", "msg": "…CSV text…"}

The message is written verbatim, byte for byte, as the last member of the line, so a
replay hands the parsers exactly the bytes the venue sent. A message that is not a single
line of JSON (a malformed frame, CSV text) is stored as a JSON string with ``"text": true``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

_MSG_KEY = b',"msg":'


@dataclass(frozen=True, slots=True)
class CapturedMessage:
    recv_ns: int  # local receive time, ns since the epoch
    venue: str
    raw: bytes  # the message exactly as received
    request: dict[str, Any] | None = None  # the JSON-RPC request an RPC response answers
    url: str | None = None  # polled venues: the URL the body came from

    def json(self) -> Any:
        return orjson.loads(self.raw)


def _header(
    recv_ns: int, venue: str, request: dict[str, Any] | None, url: str | None, text: bool
) -> bytes:
    header: dict[str, Any] = {"recv_ns": recv_ns, "venue": venue}
    if request is not None:
        header["request"] = request
    if url is not None:
        header["url"] = url
    if text:
        header["text"] = True
    return orjson.dumps(header)


def _is_single_line_json(raw: bytes) -> bool:
    if b"\n" in raw or b"\r" in raw:
        return False
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return True


def encode_capture_line(message: CapturedMessage) -> bytes:
    """One capture line (with its trailing newline) for a received message."""
    verbatim = _is_single_line_json(message.raw)
    header = _header(message.recv_ns, message.venue, message.request, message.url, not verbatim)
    body = message.raw if verbatim else orjson.dumps(message.raw.decode("utf-8", "replace"))
    return header[:-1] + _MSG_KEY + body + b"}\n"


def decode_capture_line(line: bytes) -> CapturedMessage:
    """Parse one capture line; ValueError with the reason when it is not one."""
    line = line.rstrip(b"\r\n")
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not a JSON line: {exc}") from None
    if not isinstance(doc, dict) or "msg" not in doc or "recv_ns" not in doc or "venue" not in doc:
        raise ValueError("capture line needs recv_ns, venue and msg")
    recv_ns, venue = doc["recv_ns"], doc["venue"]
    if not isinstance(recv_ns, int) or not isinstance(venue, str):
        raise ValueError("capture line: recv_ns must be an integer and venue a string")
    request, url, text = doc.get("request"), doc.get("url"), bool(doc.get("text"))
    if text:
        if not isinstance(doc["msg"], str):
            raise ValueError('capture line: "text" message must be a string')
        raw = doc["msg"].encode()
    else:
        prefix = _header(recv_ns, venue, request, url, False)[:-1] + _MSG_KEY
        if line.startswith(prefix) and line.endswith(b"}"):
            raw = line[len(prefix) : -1]  # verbatim bytes as written by the recorder
        elif isinstance(doc["msg"], str):
            raw = doc["msg"].encode()  # a hand-written capture of a polled body
        else:
            raw = orjson.dumps(doc["msg"])
    return CapturedMessage(recv_ns, venue, raw, request, url)


class CaptureWriter:
    """Appends captured messages to a file; flushes on close (and on ``flush()``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[bytes] = self.path.open("ab")
        self.count = 0

    def write(self, message: CapturedMessage) -> None:
        self._file.write(encode_capture_line(message))
        self.count += 1

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_capture(path: str | Path) -> Iterator[CapturedMessage]:
    """Messages of a capture file in order; ValueError naming the line when one is bad."""
    with Path(path).open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield decode_capture_line(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: {exc}") from None
