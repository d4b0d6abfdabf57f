"""Where the tests' data lives: the repo's own hand-made fixtures and the optional shared ones."""

import os
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
DATA = TESTS / "data"
SHARED = Path(os.environ.get("REGIME_ENGINE_SHARED", REPO.parent / "shared"))
SHARED_FIXTURES = SHARED / "fixtures"
PROTOCOL_SAMPLES = SHARED_FIXTURES / "protocol_samples"
README = REPO / "README.md"
