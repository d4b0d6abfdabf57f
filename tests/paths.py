"""Where the tests' data lives: the repo's own hand-made fixtures and the optional shared ones."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
DATA = TESTS / "data"
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"
PROTOCOL_SAMPLES = SHARED_FIXTURES / "protocol_samples"
README = REPO / "README.md"
