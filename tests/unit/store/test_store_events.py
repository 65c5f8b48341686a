"""The engines' shared helpers: prefix bounds and the memory event log's compaction."""

from __future__ import annotations

import pytest

from haplane.errors import Compacted
from haplane.store import Event
from haplane.store._events import EventLog, prefix_bounds


def ev(rev: int, key: str) -> Event:
    return Event("put", key, "v", rev, rev)


def test_prefix_bounds() -> None:
    assert prefix_bounds("") == ("", None)
    assert prefix_bounds("/a/") == ("/a/", "/a0")
    assert prefix_bounds("x\ud7ff") == ("x\ud7ff", "x\ue000"), "never a surrogate"
    assert prefix_bounds("x\U0010ffff") == ("x\U0010ffff", None)


def test_event_log_keeps_whole_txns_and_reports_compaction() -> None:
    log = EventLog(limit=3)
    log.append(1, [ev(1, "/a"), ev(1, "/b")])
    log.append(2, [])  # a txn without events takes no room
    log.append(3, [ev(3, "/c")])
    assert len(log) == 3 and log.compact_revision == 0
    assert [e.key for e in log.since(0, "")] == ["/a", "/b", "/c"]
    log.append(4, [ev(4, "/d")])
    assert log.compact_revision == 1 and len(log) == 2, "txn 1 goes whole, not just its first event"
    with pytest.raises(Compacted) as err:
        log.since(1, "")
    assert (err.value.requested, err.value.compact_revision) == (1, 2)
    assert [e.key for e in log.since(2, "")] == ["/c", "/d"]
    assert [e.key for e in log.since(4, "/d")] == ["/d"]
    assert log.since(5, "") == []


def test_event_log_keeps_the_newest_txn_even_if_it_is_larger_than_the_limit() -> None:
    log = EventLog(limit=2)
    log.append(1, [ev(1, "/a")])
    log.append(2, [ev(2, f"/k{i}") for i in range(5)])
    assert log.compact_revision == 1
    assert len(log.since(2, "")) == 5


def test_event_log_stays_bounded_over_many_appends() -> None:
    log = EventLog(limit=10)
    for rev in range(1, 5001):
        log.append(rev, [ev(rev, f"/k{rev}")])
    assert len(log) == 10
    assert [e.revision for e in log.since(4991, "")] == list(range(4991, 5001))
    assert len(log._revs) < 2100, "dropped entries are eventually released"
