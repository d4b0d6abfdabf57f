"""Books and levels of a chain file or capture: what `levels` and `chart` both read.

A chain file (``CHAIN_FORMATS``) is one complete snapshot, as of its own time; a capture goes
through the live parse path (:mod:`engine.app.capture_levels`) and gives one book per
underlying, as of its last message's venue time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from connectors.chain_files import CHAIN_FORMATS, ChainFileError, load_chain_file
from engine.app.capture_levels import books_from_capture_async
from engine.core.book import GammaBook
from engine.core.config import LevelsConfig
from engine.core.levels import compute_levels
from schemas.chain import ChainSnapshot
from schemas.levels import Levels

CAPTURE_FORMAT = "capture"
FORMATS = (*CHAIN_FORMATS, CAPTURE_FORMAT)


class ChainBooksError(ChainFileError):
    """A file that parses but cannot give levels (one line, naming the file)."""


@dataclass(frozen=True, slots=True)
class LoadedBook:
    """One underlying's book and its levels, at the file's instant."""

    book: GammaBook
    levels: Levels


def book_of(snapshot: ChainSnapshot, config: LevelsConfig) -> GammaBook:
    """The book of a complete chain snapshot, as of its own time."""
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
    return book


def load_books(path: str | Path, fmt: str, config: LevelsConfig) -> list[LoadedBook]:
    """Every underlying's book and levels in a chain file (``fmt`` one of FORMATS), by name.

    ChainFileError (bad chain file) or its ChainBooksError (unusable capture, or a chain
    without one usable contract), each one line naming the file.
    """
    if fmt == CAPTURE_FORMAT:
        try:
            books = asyncio.run(books_from_capture_async(path, config))
        except (OSError, ValueError) as exc:
            raise ChainBooksError(str(exc)) from None
        return [LoadedBook(book, compute_levels(book)) for book in books]
    book = book_of(load_chain_file(path, fmt), config)
    levels = compute_levels(book)
    if levels.contracts_used == 0:
        raise ChainBooksError(f"{path}: no unexpired contracts with a usable gamma in the chain")
    return [LoadedBook(book, levels)]
