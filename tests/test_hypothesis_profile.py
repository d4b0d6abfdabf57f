"""The hypothesis profile conftest loads: no per-example deadline (timing flakes under load)."""

from hypothesis import settings


def test_no_deadline_by_default_nor_under_a_tests_own_settings():
    assert settings().deadline is None
    assert settings(max_examples=5).deadline is None
