"""Per-partition state: created on assignment, dropped on revoke, reset on rebuild (no Kafka)."""

from __future__ import annotations

from aiokafka.structs import TopicPartition

from engine.stream.partitions import Assignment, PartitionState

OPT0 = TopicPartition("md.options.v1", 0)
IDX0 = TopicPartition("md.underlying.v1", 0)
OPT1 = TopicPartition("md.options.v1", 1)


def test_assignment_creates_one_fresh_state_per_partition():
    assignment = Assignment()
    states = assignment.assign([OPT0, IDX0])
    assert [s.tp for s in states] == [OPT0, IDX0]
    assert len(assignment) == 2 and OPT0 in assignment and OPT1 not in assignment
    state = assignment.get(OPT0)
    assert state == PartitionState(OPT0)
    assert (state.fetched_next, state.last_ts, state.committed, state.marked) == (
        None,
        0,
        None,
        None,
    )
    assert state.paused is False and state.ahead_since is None
    assert assignment.get(OPT1) is None


def test_assigning_again_keeps_the_state_held():
    assignment = Assignment()
    (state,) = assignment.assign([OPT0])
    state.fetched_next = 42
    (again,) = assignment.assign([OPT0])
    assert again is state and again.fetched_next == 42


def test_revoke_drops_only_the_revoked_partitions():
    assignment = Assignment()
    assignment.assign([OPT0, IDX0, OPT1])
    assignment.fetched(OPT1, 7)
    assignment.revoke({OPT0, IDX0, TopicPartition("unknown", 9)})
    assert [s.tp for s in assignment] == [OPT1]
    assert assignment.get(OPT1).fetched_next == 7
    assignment.fetched(OPT0, 3)  # a revoked partition's late fetch is ignored
    assert assignment.get(OPT0) is None
    # a partition assigned again starts over
    (state,) = assignment.assign([OPT0])
    assert state.fetched_next is None


def test_caught_up_needs_the_position_at_the_log_end_and_not_past_it():
    assignment = Assignment()
    (state,) = assignment.assign([OPT0])
    assert not assignment.caught_up(OPT0, 10)  # nothing fetched yet
    assignment.fetched(OPT0, 9)
    assert not assignment.caught_up(OPT0, 10)
    assert not assignment.caught_up(OPT0, None)  # log end unknown
    assignment.fetched(OPT0, 10)
    assert assignment.caught_up(OPT0, 10)
    state.ahead_since = 1.0
    assert not assignment.caught_up(OPT0, 10)
    assert not assignment.caught_up(OPT1, 10)  # not assigned


def test_beyond_the_end_is_confirmed_only_after_the_delay():
    assignment = Assignment()
    assignment.assign([OPT0, IDX0, OPT1])
    assignment.fetched(OPT0, 50)
    assignment.fetched(IDX0, 5)
    assignment.fetched(OPT1, 50)
    ends = {OPT0: 20, IDX0: 5, OPT1: None}
    assert assignment.beyond_the_end(ends.get, now=100.0, confirm_s=3.0) == set()
    assert assignment.get(OPT0).ahead_since == 100.0
    assert assignment.get(IDX0).ahead_since is None
    assert assignment.get(OPT1).ahead_since is None  # log end unknown: not judged
    assert assignment.beyond_the_end(ends.get, now=102.9, confirm_s=3.0) == set()
    assert assignment.beyond_the_end(ends.get, now=103.0, confirm_s=3.0) == {0}
    assert assignment.get(OPT0).ahead_since == 100.0
    # the log end catches up (a new leader reported a low end for a moment): watch ends
    ends[OPT0] = 60
    assert assignment.beyond_the_end(ends.get, now=104.0, confirm_s=3.0) == set()
    assert assignment.get(OPT0).ahead_since is None


def test_reset_on_rebuild_keeps_committed_marked_and_paused():
    assignment = Assignment()
    (state,) = assignment.assign([OPT0])
    state.fetched_next, state.last_ts, state.ahead_since = 90, 123, 5.0
    assignment.committed({OPT0: 80})
    assignment.marked({OPT0: 85})
    state.paused = True
    (same,) = assignment.assign([OPT0])
    same.reset(0)
    assert same is state
    assert (state.fetched_next, state.last_ts, state.ahead_since) == (0, 0, None)
    assert (state.committed, state.marked, state.paused) == (80, 85, True)


def test_backpressure_pauses_at_the_limit_and_resumes_below_half():
    assignment = Assignment()
    assignment.assign([OPT0, IDX0])
    sizes = {OPT0: 100, IDX0: 99}
    assert assignment.backpressure(sizes.__getitem__, 100) == ([OPT0], [])
    assert assignment.get(OPT0).paused and not assignment.get(IDX0).paused
    assert assignment.backpressure(sizes.__getitem__, 100) == ([], [])  # already paused
    sizes[OPT0] = 50  # not below half yet
    assert assignment.backpressure(sizes.__getitem__, 100) == ([], [])
    sizes[OPT0] = 49
    assert assignment.backpressure(sizes.__getitem__, 100) == ([], [OPT0])
    assert not assignment.get(OPT0).paused


def test_offsets_to_commit_and_to_mark_are_the_ones_that_moved():
    assignment = Assignment()
    assignment.assign([OPT0, IDX0])
    processed = {OPT0: 10, IDX0: 4}
    assert assignment.to_commit(processed) == {OPT0: 10, IDX0: 4}
    assignment.committed({OPT0: 10})
    assert assignment.to_commit(processed) == {IDX0: 4}
    assignment.committed({IDX0: 4})
    assert assignment.to_commit(processed) == {}
    assert assignment.to_commit({OPT0: 11, IDX0: 4}) == {OPT0: 11}
    # marks are tracked apart from commits
    assert assignment.to_mark(processed) == processed
    assignment.marked(processed)
    assert assignment.to_mark(processed) == {}
    assert assignment.get(OPT0).committed == 10 and assignment.get(OPT0).marked == 10
