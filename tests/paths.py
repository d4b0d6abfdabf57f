"""Where the tests' data lives: the repo's own hand-made fixtures and the optional shared ones."""

import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
DATA = TESTS / "data"
SHARED = Path(os.environ.get("REGIME_ENGINE_SHARED", REPO.parent / "shared"))
SHARED_FIXTURES = SHARED / "fixtures"
PROTOCOL_SAMPLES = SHARED_FIXTURES / "protocol_samples"
README = REPO / "README.md"

# The reason prefix of the one allowed fixture skip (see ``ALLOWED_SKIP_PREFIXES`` in conftest).
SHARED_SKIP = "shared-fixtures:"


def shared_fixture(path: Path) -> Path:
    """``path`` under ``../shared``: skips if ``../shared`` is absent, fails if only the file is.

    A renamed or deleted fixture file then fails its test instead of skipping it.
    """
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED_SKIP} {SHARED} not present (../shared is optional)")
    assert path.is_file(), f"shared fixture {path} missing (../shared is present)"
    return path
