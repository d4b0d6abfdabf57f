"""The shared connector lifecycle: Backoff (capped, jittered), Watchdog (fake clock), Services."""

from __future__ import annotations

import asyncio

import pytest

from connectors.common.lifecycle import Backoff, Services, StaleFeed, Watchdog, cancel_and_wait


class FixedDraws:
    """An injected rng whose ``random()`` returns the given draws in turn."""

    def __init__(self, *draws: float) -> None:
        self.draws = list(draws)

    def random(self) -> float:
        return self.draws.pop(0)


class FakeClock:
    """A clock that moves only when told; counts its reads."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def test_backoff_grows_by_factor_up_to_the_cap_with_full_jitter() -> None:
    backoff = Backoff(
        initial_s=0.5, cap_s=3.0, factor=2.0, minimum_s=0.0, rng=FixedDraws(*[1.0] * 6)
    )
    # Ceilings 0.5, 1, 2, then capped at 3 (a draw of 1.0 is the ceiling itself).
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]

    jittered = Backoff(initial_s=0.5, cap_s=3.0, minimum_s=0.0, rng=FixedDraws(0.5, 0.25, 0.1))
    assert [jittered.next_delay() for _ in range(3)] == [0.25, 0.25, 0.2]


def test_backoff_floor_reset_and_penalise() -> None:
    backoff = Backoff(initial_s=1.0, cap_s=30.0, minimum_s=0.05, rng=FixedDraws(0.0, 0.01, 1, 1, 1))
    assert backoff.next_delay() == 0.05  # a zero draw still waits the floor
    assert backoff.next_delay() == 0.05  # 2 * 0.01 = 0.02 < floor
    backoff.penalise(3)  # attempt 2 -> 5: ceiling 32 -> capped at 30
    assert backoff.next_delay() == 30.0
    backoff.reset()
    assert backoff.next_delay() == 1.0
    backoff.penalise(1_000)  # the exponent stays bounded: no overflow
    assert backoff.next_delay() == 30.0


@pytest.mark.parametrize(
    "kwargs",
    [{"initial_s": 0.0}, {"initial_s": 5.0, "cap_s": 1.0}, {"factor": 0.5}, {"minimum_s": -1.0}],
)
def test_backoff_rejects_bad_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="backoff needs 0 < initial_s <= cap_s"):
        Backoff(**kwargs)


def test_watchdog_ages_on_the_given_clock() -> None:
    clock = FakeClock()
    dog = Watchdog(stale_after_s=5.0, clock=clock)
    clock.now += 5.0
    assert dog.age() == 5.0 and not dog.is_stale()  # stale only beyond the limit
    clock.now += 0.5
    assert dog.is_stale()
    dog.touch()
    assert dog.age() == 0.0 and not dog.is_stale()


def test_watchdog_stale_keys_are_those_seen_before_but_not_lately() -> None:
    clock = FakeClock()
    dog = Watchdog(stale_after_s=60.0, clock=clock)
    dog.touch("a")
    clock.now += 10.0
    dog.touch("b")
    clock.now += 10.0
    dog.touch("c")
    assert dog.stale_keys(15.0) == ["a"]
    assert dog.stale_keys(10.0) == ["a"]  # b is exactly 10 s old: not beyond the limit
    assert dog.stale_keys(9.5) == ["a", "b"]
    assert dog.stale_keys(5.0) == ["a", "b"]
    dog.forget("a")
    assert dog.stale_keys(5.0) == ["b"]
    assert dog.age() == 0.0  # a keyed touch is a touch of the feed too


@pytest.mark.asyncio
async def test_watchdog_watch_raises_once_the_feed_goes_quiet() -> None:
    clock = FakeClock()
    dog = Watchdog(stale_after_s=0.04, clock=clock)
    task = asyncio.create_task(dog.watch(poll_s=0.01))
    try:
        async with asyncio.timeout(30):  # a few polls on a clock that does not move
            while clock.reads < 5:
                await asyncio.sleep(0.01)
        assert not task.done()
        clock.now += 1.0
        with pytest.raises(StaleFeed, match=r"no message for 1\.0 s"):
            await asyncio.wait_for(task, 30.0)
    finally:
        task.cancel()


@pytest.mark.asyncio
async def test_services_stop_in_reverse_order_and_collect_failures() -> None:
    stopped: list[str] = []

    def stopper(name: str, fail: bool = False):
        async def stop() -> None:
            stopped.append(name)
            if fail:
                raise RuntimeError(f"{name} failed")

        return stop

    async with Services() as services:
        services.add("kafka", stopper("kafka"))
        services.add("redis", stopper("redis", fail=True))
        services.add("poller", stopper("poller"))
    assert stopped == ["poller", "redis", "kafka"]  # a failing stop does not stop the rest

    services = Services()
    services.add("a", stopper("a", fail=True))
    failures = await services.close()
    assert [(name, str(exc)) for name, exc in failures] == [("a", "a failed")]
    assert await services.close() == []  # each stop runs once


@pytest.mark.asyncio
async def test_services_bound_each_stop() -> None:
    never = asyncio.Event()
    stopped: list[str] = []

    async def hangs() -> None:
        await never.wait()

    async def quick() -> None:
        stopped.append("first")

    services = Services(stop_timeout_s=0.05)
    services.add("first", quick)
    services.add("hangs", hangs)
    async with asyncio.timeout(30):
        failures = await services.close()
    assert [(name, type(exc)) for name, exc in failures] == [("hangs", TimeoutError)]
    assert stopped == ["first"]


@pytest.mark.asyncio
async def test_a_stop_leaking_a_cancellation_does_not_end_the_close() -> None:
    """aiokafka's consumer.stop() raises CancelledError when its broker is gone; the other
    services are still stopped, and a cancel of the closing task itself still ends it."""
    stopped: list[str] = []

    async def leaks() -> None:
        stopped.append("consumer")
        raise asyncio.CancelledError

    async def quick() -> None:
        stopped.append("redis")

    services = Services()
    services.add("redis", quick)
    services.add("consumer", leaks)
    failures = await services.close()
    assert stopped == ["consumer", "redis"]
    assert [(name, type(exc)) for name, exc in failures] == [("consumer", asyncio.CancelledError)]

    waiting, never = asyncio.Event(), asyncio.Event()

    async def hangs() -> None:
        waiting.set()
        await never.wait()

    services = Services()
    services.add("redis", quick)
    services.add("hangs", hangs)
    task = asyncio.create_task(services.close())
    await waiting.wait()  # the close is waiting on "hangs"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.asyncio
async def test_a_cancel_landing_as_a_stop_completes_still_ends_the_close() -> None:
    """Python 3.11's ``asyncio.wait_for`` returns the result and drops a cancellation that
    arrives in the loop iteration its awaitable completes in: a hard-stopped engine then ran
    on for ever. The close must end with the CancelledError either way."""
    stopping = asyncio.Event()
    done = asyncio.get_running_loop().create_future()

    async def slow() -> None:
        stopping.set()
        await done

    later: list[str] = []

    async def after() -> None:
        later.append("redis")

    services = Services()
    services.add("redis", after)
    services.add("consumer", slow)
    task = asyncio.create_task(services.close())
    await stopping.wait()
    done.set_result(None)  # the stop completes ...
    task.cancel()  # ... and the cancel lands in the same iteration
    with pytest.raises(asyncio.CancelledError):
        await task
    assert later == []  # the close ended there


@pytest.mark.asyncio
async def test_cancel_and_wait_absorbs_the_tasks_cancellation_not_the_callers() -> None:
    stubborn_started = asyncio.Event()

    async def stubborn() -> None:  # takes a while to wind down after its cancel
        stubborn_started.set()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.05)

    child = asyncio.create_task(stubborn())
    await stubborn_started.wait()
    await cancel_and_wait(child)  # the child's own CancelledError is absorbed
    assert child.cancelled()

    other = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    after: list[str] = []

    async def owner() -> None:
        await cancel_and_wait(other)
        after.append("ran on")

    task = asyncio.create_task(owner())
    await asyncio.sleep(0.01)  # the owner waits for the child to wind down ...
    task.cancel()  # ... and is cancelled itself meanwhile
    with pytest.raises(asyncio.CancelledError):
        await task
    assert after == []
