"""Same input, same events: engines consuming a session live, while each topic reaches the
log at its own pace, through a hard stop and restart and a handover between two engines,
write exactly the Redis stream (event ids, order, payloads) and the latest levels of one
engine reading the finished log (see :mod:`tests.stream.live_replay`)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from tests.stream.live_replay import Case, run_case, staged_session

cases = st.builds(
    Case,
    seed=st.integers(0, 2**32 - 1),
    max_records=st.integers(10, 400),
    checkpoint_interval_s=st.sampled_from([0.05, 0.2, 1.0]),
    kill_at=st.floats(0.0, 1.2),
    handover_at=st.floats(0.0, 1.2),
)


@pytest.fixture(scope="module")
def staged(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return asyncio.run(staged_session(kafka_bootstrap, tmp_path_factory.mktemp("live")))


@settings(
    max_examples=3,
    deadline=None,
    derandomize=False,
    # each case runs engines through a real broker for seconds: a failing case is reported
    # as drawn (its fields say how to rerun it in benchmarks/determinism.py), not shrunk
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=cases)
def test_live_consumption_equals_one_replay_of_the_finished_log(
    case: Case, kafka_bootstrap: str, redis_url: str, staged: dict
) -> None:
    reference_url = redis_url.rsplit("/", 1)[0] + f"/{(int(redis_url.rsplit('/', 1)[1]) + 8) % 16}"

    async def flush() -> None:
        for url in (redis_url, reference_url):
            client = Redis.from_url(url)
            await client.flushdb()
            await client.aclose()

    asyncio.run(flush())
    out = asyncio.run(run_case(kafka_bootstrap, redis_url, reference_url, staged, case))
    assert len(out.replay_events) >= 2
    assert [e.id for e in out.live_events] == [e.id for e in out.replay_events]
    assert out.live_events == out.replay_events  # payloads too (one fixed emit clock)
    assert out.live_levels is not None and out.live_levels == out.replay_levels
    for report in out.reports:  # nothing given up on, nothing out of send order
        summary = report.to_dict()
        assert summary["merge_gaps"] == 0 and summary["merge_forced"] == 0
