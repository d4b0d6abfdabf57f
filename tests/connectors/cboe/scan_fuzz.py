"""Mutated real CBOE bodies through the byte scanner, in a process with bounds-checked numba.

    NUMBA_BOUNDSCHECK=1 NUMBA_CACHE_DIR=DIR python -m tests.connectors.cboe.scan_fuzz --cases N

Run by ``test_scan_bounds.py`` and ``benchmarks/fuzz_scan.py``, each in a process of its
own: numba reads ``NUMBA_BOUNDSCHECK`` at import, and a bounds-checked kernel raises
IndexError where an unchecked one would read past its array. ``NUMBA_CACHE_DIR`` must be set
too, to a directory of bounds-checked kernels only: numba's cache key does not include the
flag, so the project's cache would hand back unchecked kernels.

The bodies are real ones (``tests/data/cboe_small.json``; simulator chains rendered as CBOE
delayed quotes), each case with 1 to 3 mutations drawn by hypothesis. Every case is read on
1, 2 and 3 pieces and classed: ``out_of_bounds`` (IndexError), ``crashes`` (any other
exception), ``disagreements`` (an answer that differs from orjson's decode, or an answer
for a body the decoder rejects), else ``accepted`` or ``fell_back`` (None). A body orjson
rejects but the scanner reads must be read the same by the typed decoder the scanner stands
in for (``columns.py``): a number out of float range in a skipped field, which orjson
rejects and msgspec skips, is ``accepted_orjson_rejects``. Prints one JSON object; the
first three counts must be 0.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

import msgspec
import numba
import numpy as np
import orjson
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from connectors.cboe.scan import scan_cboe_json
from connectors.common.errors import ParseError
from connectors.simulator.chains import spx_like_chain, to_cboe_delayed_quotes
from tests.connectors.cboe.test_cboe_scan import as_tuple, reference, same, typed_decoder

PIECES = (1, 2, 3)
_DATA = Path(__file__).resolve().parents[2] / "data" / "cboe_small.json"


def base_bodies() -> dict[str, bytes]:
    """The unmutated bodies: as served (indented, compact), and cut down to the read fields."""
    small = _DATA.read_bytes()
    chain = to_cboe_delayed_quotes(spx_like_chain(8, seed=3))
    lean = {
        "timestamp": chain["timestamp"],
        "data": {
            "current_price": chain["data"]["current_price"],
            "options": [
                {"option": r["option"], "open_interest": r["open_interest"]}
                | ({"iv": None if i % 3 == 1 else r["iv"]} if i % 3 else {})
                | ({"gamma": r["gamma"]} if i % 2 else {"gamma": None})
                for i, r in enumerate(chain["data"]["options"])
            ],
        },
    }
    return {
        "small": small,
        "small_compact": orjson.dumps(orjson.loads(small)),
        "chain": orjson.dumps(chain),
        "chain_indented": json.dumps(chain, indent=1).encode(),
        "lean": orjson.dumps(lean),
    }


# ---------------------------------------------------------------- where to mutate

_STRING = re.compile(rb'"([^"\\]*)"')
_KEY = re.compile(rb'"([^"\\]*)"\s*:')
_NUMBER = re.compile(rb"-?[0-9][0-9.eE+-]*")
_MEMBER = re.compile(rb'"[^"\\]*"\s*:\s*(?:"[^"\\]*"|-?[0-9][0-9.eE+-]*|null|true|false)\s*,?')
_LITERAL = re.compile(rb"true|false|null")
_VALUE = re.compile(rb'"[^"\\]*"|-?[0-9][0-9.eE+-]*|null|true|false')


def _positions(body: bytes, kind: str) -> list[int]:
    """Offsets of one kind of place in the body: inside a string, a key, a number, ..."""
    if kind == "string":
        return [i for m in _STRING.finditer(body) for i in range(m.start(1), m.end(1) + 1)]
    if kind == "key":
        return [i for m in _KEY.finditer(body) for i in range(m.start(1), m.end(1) + 1)]
    if kind == "number":
        return [i for m in _NUMBER.finditer(body) for i in range(m.start(), m.end() + 1)]
    if kind == "escape":
        return [i + k for i, b in enumerate(body) if b == 92 for k in (0, 1, 2)]
    if kind == "structural":
        return [i + k for i, b in enumerate(body) if b in b"{}[],:" for k in (0, 1)]
    if kind == "literal":
        return [i for m in _LITERAL.finditer(body) for i in range(m.start(), m.end() + 1)]
    if kind == "multibyte":
        return [i for i, b in enumerate(body) if b >= 0x80]
    return list(range(len(body) + 1))


_KINDS = ("any", "string", "key", "number", "literal", "escape", "structural", "multibyte")


def _position(draw: st.DrawFn, body: bytes) -> int:
    places = _positions(body, draw(st.sampled_from(_KINDS))) or [len(body)]
    return min(places[draw(st.integers(0, len(places) - 1))], len(body))


# ---------------------------------------------------------------- what to put there

_TOKENS = [
    *(bytes([b]) for b in b'"\\{}[],:0123456789-eE+. \n\t\x00\x1f\x7f'),
    b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", "é".encode(), "€".encode(), "😀".encode(), b"\xff",
    b"\\u", b"\\u00e9", b"\\ud800", b'\\"', b"\\\\", b"null", b"true", b"false", b"nul", b"tru",
    b"[]", b"{}", b'"":', b'"x":1,', b"},{", b"}, {", b"1e999", b"-0", b"[" * 65, b'{"a":' * 65,
]  # fmt: skip
_NUMBERS = [
    b"1e999999999999999999999", b"1e-400", b"1e308", b"1e+22", b"1e23", b"1e-22", b"1e-23",
    b"-0", b"-0.0", b"0e0", b"0E-0", b"9007199254740992", b"9007199254740993", b"1" * 400,
    b"0." + b"0" * 400 + b"1", b"1." + b"9" * 40, b"1.7976931348623157e308", b"4.9e-324",
    b"18446744073709551616", b"-9223372036854775809", b"00", b"01", b"-", b"1.", b".5",
    b"1e", b"1e+", b"--1", b"+1", b"1.e5", b"0x10", b"NaN", b"Infinity", b"-Infinity", b"",
]  # fmt: skip
_STRINGS = [
    b"", b"\\u0041", b"\\n", b'\\"', b"\\", "é".encode(), "é".encode()[:1], "€".encode()[:2],
    "😀".encode()[:3], b"\x01", b"\t", b"\x7f", b"x" * 5000, b"},{", b'"', b"SPXW250314C0\xc3",
]  # fmt: skip
_DEPTHS = (1, 2, 61, 62, 63, 64, 65, 100)


def _pick(draw: st.DrawFn, pattern: re.Pattern[bytes], body: bytes) -> re.Match[bytes] | None:
    found = list(pattern.finditer(body))
    return found[draw(st.integers(0, len(found) - 1))] if found else None


def _matching_close(body: bytes, at: int) -> int:
    """The ``]`` closing the ``[`` at ``at`` (strings not considered); -1 if none."""
    depth = 0
    for i in range(at, len(body)):
        depth += {91: 1, 93: -1}.get(body[i], 0)
        if depth == 0:
            return i
    return -1


def _mutate(draw: st.DrawFn, body: bytes) -> tuple[bytes, str]:
    op = draw(st.sampled_from(_OPS))
    if op in ("truncate", "flip", "insert", "delete", "duplicate"):
        at = _position(draw, body)
        if op == "truncate":
            return body[:at], f"truncate@{at}"
        if op == "flip":
            new = draw(st.one_of(st.integers(0, 255), st.sampled_from(list(b'"\\{}[],:-e0'))))
            return body[:at] + bytes([new]) + body[at + 1 :], f"flip@{at}={new}"
        if op == "insert":
            token = draw(st.sampled_from(_TOKENS))
            return body[:at] + token + body[at:], f"insert@{at}={token[:12]!r}"
        size = draw(st.integers(1, 64))
        if op == "delete":
            return body[:at] + body[at + size :], f"delete@{at}+{size}"
        to = _position(draw, body)
        return body[:to] + body[at : at + size] + body[to:], f"copy@{at}+{size}->{to}"
    if op in ("drop_member", "duplicate_member"):
        m = _pick(draw, _MEMBER, body)
        if m is None:
            return body, "no member"
        if op == "drop_member":
            return body[: m.start()] + body[m.end() :], f"drop_member@{m.start()}"
        member = m.group().rstrip().rstrip(b",")
        return body[: m.start()] + member + b"," + body[m.start() :], f"dup_member@{m.start()}"
    if op == "number":
        m, new = _pick(draw, _NUMBER, body), draw(st.sampled_from(_NUMBERS))
        if m is None:
            return body, "no number"
        return body[: m.start()] + new + body[m.end() :], f"number@{m.start()}={new[:12]!r}"
    if op == "string":
        m, new = _pick(draw, _STRING, body), draw(st.sampled_from(_STRINGS))
        if m is None:
            return body, "no string"
        return body[: m.start(1)] + new + body[m.end(1) :], f"string@{m.start()}={new[:12]!r}"
    if op == "empty_array":
        opens = [i for i, b in enumerate(body) if b == 91]
        if not opens:
            return body, "no array"
        at = opens[draw(st.integers(0, len(opens) - 1))]
        close = _matching_close(body, at)
        if close < 0:
            return body, "no array end"
        return body[: at + 1] + body[close:], f"empty_array@{at}"
    m = _pick(draw, _VALUE, body)  # nest: wrap a value in arrays or objects
    if m is None:
        return body, "no value"
    depth, kind = draw(st.sampled_from(_DEPTHS)), draw(st.sampled_from(["array", "object"]))
    left, right = (b"[", b"]") if kind == "array" else (b'{"x":', b"}")
    wrapped = left * depth + m.group() + right * depth
    return body[: m.start()] + wrapped + body[m.end() :], f"nest@{m.start()}:{kind}*{depth}"


_OPS = (
    "truncate", "flip", "insert", "delete", "duplicate", "drop_member", "duplicate_member",
    "number", "string", "empty_array", "nest",
)  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, bases: dict[str, bytes]) -> tuple[bytes, list[str]]:
    """A base body with 1 to 3 mutations; with the list of what was done, to reproduce it."""
    name = draw(st.sampled_from(sorted(bases)))
    body, done = bases[name], [name]
    for _ in range(draw(st.integers(1, 3))):
        body, what = _mutate(draw, body)
        done.append(what)
    return body, done


# ---------------------------------------------------------------- the check


def classify(body: bytes) -> tuple[str, str]:
    """(outcome, detail) of one body read on each of ``PIECES``."""
    accepted = beyond_orjson = False
    for pieces in PIECES:
        try:
            scanned = scan_cboe_json(body, pieces)
            answer = None if scanned is None else as_tuple(scanned)
        except ParseError:
            continue
        except Exception as exc:  # counting what escapes is the point
            # From the parallel kernel, a bounds check's IndexError comes as the cause of a
            # SystemError ("returned a result with an exception set").
            out_of_bounds = isinstance(exc, IndexError) or isinstance(exc.__cause__, IndexError)
            outcome = "out_of_bounds" if out_of_bounds else "crashes"
            return outcome, f"pieces={pieces}: {type(exc).__name__}: {exc} ({exc.__cause__!r})"
        if answer is None:
            continue
        expected = reference(body)
        if expected is None:  # orjson rejects it: what the typed decoder (the fallback) reads
            beyond_orjson = True
            try:
                expected = typed_decoder(body)
            except (msgspec.ValidationError, msgspec.DecodeError):
                expected = None
        if expected is None or not same(answer, expected):
            return "disagreements", f"pieces={pieces}: read {answer!r:.300} for {expected!r:.300}"
        accepted = True
    if beyond_orjson:
        return "accepted_orjson_rejects", ""
    return ("accepted" if accepted else "fell_back"), ""


def boundscheck_works() -> bool:
    """Whether a kernel compiled in this process raises IndexError past an array's end."""

    @numba.njit
    def past_the_end(a: np.ndarray) -> int:
        return a[len(a)]

    try:
        past_the_end(np.zeros(3, dtype=np.int64))
    except IndexError:
        return True
    return False


FAILURES = ("out_of_bounds", "crashes", "disagreements")
OTHERS = ("accepted", "accepted_orjson_rejects", "fell_back")


def run(cases: int, seed_value: int) -> dict:
    """Fuzz ``cases`` mutated bodies (after the unmutated ones); the report."""
    if not numba.config.BOUNDSCHECK or not numba.config.CACHE_DIR:
        raise SystemExit("run with NUMBA_BOUNDSCHECK=1 and a NUMBA_CACHE_DIR of its own")
    bases = base_bodies()
    counts: Counter[str] = Counter()
    failures: list[dict] = []

    def one(body: bytes, done: list[str]) -> None:
        outcome, detail = classify(body)
        counts[outcome] += 1
        if outcome in FAILURES and len(failures) < 5:
            failures.append(
                {"outcome": outcome, "detail": detail, "mutations": done, "body": repr(body)[:600]}
            )

    start = time.perf_counter()
    for name, body in bases.items():
        one(body, [name])
    unmutated_accepted = counts["accepted"] == len(bases)

    @seed(seed_value)
    @settings(
        max_examples=cases,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=mutated(bases))
    def fuzz(case: tuple[bytes, list[str]]) -> None:
        one(*case)

    fuzz()
    return {
        "boundscheck": boundscheck_works(),
        "seed": seed_value,
        "cases": sum(counts.values()),
        **{name: counts[name] for name in (*FAILURES, *OTHERS)},
        "unmutated_accepted": unmutated_accepted,
        "seconds": round(time.perf_counter() - start, 1),
        "failures": failures,
    }


def main(argv: list[str] | None = None, default_cases: int = 3000) -> int:
    """The command line: run, print the report; exit status 1 on any failure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=default_cases)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--json", action="store_true", help="one JSON object (the default)")
    args = parser.parse_args(argv)
    seed_value = random.randrange(2**32) if args.seed is None else args.seed
    report = run(args.cases, seed_value)
    print(json.dumps(report, indent=None if args.json else 2))
    return 0 if all(report[name] == 0 for name in FAILURES) and report["boundscheck"] else 1


if __name__ == "__main__":
    sys.exit(main())
