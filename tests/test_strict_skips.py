"""``REGIME_ENGINE_STRICT_SKIPS=1``: an unexpected skip fails the run, an allowed one does not."""

from __future__ import annotations

import pytest

from tests.conftest import STRICT_SKIPS_ENV

CONFTEST = "from tests.conftest import pytest_configure, pytest_runtest_makereport  # noqa: F401\n"
TESTS = """
import pytest

def test_unexpected():
    pytest.skip("the broker is not installed")

def test_allowed_shared():
    pytest.skip("shared-fixtures: ../shared not present")

def test_allowed_kafka():
    pytest.skip("apache-kafka: no Java")

@pytest.fixture
def broken():
    pytest.skip("fixture skipped for no named reason")

def test_unexpected_in_setup(broken):
    pass

def test_passes():
    pass
"""


def _run(pytester: pytest.Pytester, strict: str | None) -> pytest.RunResult:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_skips=TESTS)
    with pytest.MonkeyPatch.context() as mp:
        if strict is None:
            mp.delenv(STRICT_SKIPS_ENV, raising=False)
        else:
            mp.setenv(STRICT_SKIPS_ENV, strict)
        return pytester.runpytest_inprocess("-rA")


def test_strict_mode_fails_unexpected_skips_only(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "1")
    result.assert_outcomes(passed=1, skipped=2, failed=1, errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    unexpected = "unexpected skip under REGIME_ENGINE_STRICT_SKIPS=1 *: "
    result.stdout.fnmatch_lines([unexpected + "the broker is not installed"])
    result.stdout.fnmatch_lines([unexpected + "fixture skipped for no named reason"])
    result.stdout.fnmatch_lines(["FAILED test_skips.py::test_unexpected -*"])
    result.stdout.fnmatch_lines(["ERROR test_skips.py::test_unexpected_in_setup -*"])
    result.stdout.fnmatch_lines(["SKIPPED*apache-kafka: no Java"])
    result.stdout.fnmatch_lines(["SKIPPED*shared-fixtures: ../shared not present"])


@pytest.mark.parametrize("strict", [None, "0"])
def test_without_strict_mode_every_skip_is_a_skip(
    pytester: pytest.Pytester, strict: str | None
) -> None:
    result = _run(pytester, strict)
    result.assert_outcomes(passed=1, skipped=4)
    assert result.ret == pytest.ExitCode.OK


def test_apache_kafka_tests_skip_by_name_without_the_jars(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A machine without the broker's jars (HOME elsewhere: no cache) skips the kafka
    half of the ``broker`` fixture with an allowed reason, so strict CI stays green."""
    monkeypatch.setenv("HOME", str(pytester.path))
    monkeypatch.setenv(STRICT_SKIPS_ENV, "1")
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest(
        "from tests.conftest import apache_kafka_bootstrap, broker  # noqa: F401\n" + CONFTEST
    )
    pytester.makepyfile(
        test_kafka="""
import pytest

@pytest.mark.parametrize("broker", ["kafka"], indirect=True)
def test_on_apache_kafka(broker):
    raise AssertionError("ran without the jars")
"""
    )
    result = pytester.runpytest_inprocess("-rA")
    result.assert_outcomes(skipped=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["SKIPPED*apache-kafka: Apache Kafka * jars not in *kafka-jars*"])
