"""Commits cover only the finished prefix of each partition, whatever order records end in."""

from __future__ import annotations

from aiokafka import TopicPartition

from workers.offsets import OffsetTracker

TP = TopicPartition("jobs.due.normal", 0)
OTHER = TopicPartition("jobs.due.normal", 1)


def test_nothing_started_nothing_to_commit() -> None:
    assert OffsetTracker().committable() == {}


def test_in_order_completion_commits_past_the_last() -> None:
    tracker = OffsetTracker()
    tickets = [tracker.start(TP, offset) for offset in (10, 11, 12)]
    for ticket in tickets:
        tracker.done(ticket)
    assert tracker.committable() == {TP: 13}


def test_a_running_record_holds_back_the_later_finished_ones() -> None:
    tracker = OffsetTracker()
    first, second, third = (tracker.start(TP, offset) for offset in (10, 11, 12))
    tracker.done(second)
    tracker.done(third)
    assert tracker.committable() == {TP: 10}
    tracker.done(first)
    assert tracker.committable() == {TP: 13}


def test_gaps_in_offsets_do_not_hold_back_the_commit() -> None:
    # Compaction and transaction markers leave offsets a consumer never sees.
    tracker = OffsetTracker()
    first, later = tracker.start(TP, 3), tracker.start(TP, 7)
    tracker.done(first)
    assert tracker.committable() == {TP: 7}
    tracker.done(later)
    assert tracker.committable() == {TP: 8}


def test_partitions_progress_independently() -> None:
    tracker = OffsetTracker()
    stuck = tracker.start(TP, 0)
    tracker.done(tracker.start(OTHER, 5))
    assert tracker.committable() == {TP: 0, OTHER: 6}
    tracker.done(stuck)
    assert tracker.committable() == {TP: 1, OTHER: 6}


def test_committed_offsets_are_not_offered_again() -> None:
    tracker = OffsetTracker()
    tracker.done(tracker.start(TP, 0))
    tracker.committed(tracker.committable())
    assert tracker.committable() == {}
    tracker.done(tracker.start(TP, 1))
    assert tracker.committable() == {TP: 2}


def test_a_dropped_partition_is_forgotten() -> None:
    tracker = OffsetTracker()
    tracker.done(tracker.start(TP, 0))
    tracker.start(OTHER, 0)
    tracker.drop({TP})
    assert tracker.committable() == {OTHER: 0}
    assert tracker.running() == 1


def test_a_done_from_before_a_revocation_does_not_finish_the_redelivered_copy() -> None:
    tracker = OffsetTracker()
    stale = tracker.start(TP, 4)
    tracker.drop({TP})
    redelivered = tracker.start(TP, 4)
    tracker.done(stale)
    assert tracker.committable() == {TP: 4}
    tracker.done(redelivered)
    assert tracker.committable() == {TP: 5}
