"""The activity log: every change the agent makes, with its time, reason and result.

One record per Change: logged as one line, counted (for /metrics), kept in a bounded ring for the UI and
``haplane events``, appended to ``events.jsonl`` in the state directory (flushed per record, so a crash
loses nothing already done), and pushed to live followers (SSE, ``events --follow``)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from haplane.model.change import Change

log = logging.getLogger("haplane.agent")
MAX_FILE_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ActivityRecord:
    seq: int
    time: float
    kind: str
    subject: str
    reason: str
    result: str  # ok | failed | pending | quarantined | held
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def service(self) -> str:
        """The backend/service this record is about, for filtering."""
        subj = self.subject
        for prefix in ("service:", "backend:", "frontend:"):
            if subj.startswith(prefix):
                return subj[len(prefix):]
        return subj.split("/", 1)[0]


class Activity:
    def __init__(self, path: Path | None = None, keep: int = 10_000,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self.records: deque[ActivityRecord] = deque(maxlen=keep)
        self.counts: Counter[tuple[str, str]] = Counter()  # (kind, result) → n
        self.seq = 0
        self._followers: set[asyncio.Queue[ActivityRecord]] = set()
        self.listeners: list[Callable[[ActivityRecord], None]] = []  # called for every new record (metrics)
        self._fh: TextIO | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._load_tail(path)

    def _load_tail(self, path: Path) -> None:
        if not path.exists():
            return
        try:
            with path.open(encoding="utf-8") as fh:
                for line in fh:
                    try:
                        rec = ActivityRecord(**json.loads(line))
                    except (ValueError, TypeError):
                        continue
                    self.records.append(rec)
                    self.seq = max(self.seq, rec.seq)
        except OSError as exc:
            log.warning("cannot read activity log %s: %s", path, exc)

    def record(self, change: Change, result: str = "ok", **extra: Any) -> ActivityRecord:
        self.seq += 1
        detail = dict(change.detail)
        detail.update(extra)
        rec = ActivityRecord(self.seq, self.clock(), change.kind, change.subject, change.reason, result, detail)
        self.records.append(rec)
        self.counts[(rec.kind, rec.result)] += 1
        level = logging.WARNING if result in ("failed", "quarantined", "held") else logging.INFO
        log.log(level, "%s %s: %s [%s]", rec.kind, rec.subject, rec.reason, result)
        self._append(rec)
        for listener in self.listeners:
            try:
                listener(rec)
            except Exception:  # a broken listener must not stop the agent
                log.exception("activity listener failed")
        for q in list(self._followers):
            if q.qsize() < 10_000:
                q.put_nowait(rec)
        return rec

    def _append(self, rec: ActivityRecord) -> None:
        if self.path is None:
            return
        try:
            if self._fh is None:
                self._fh = self.path.open("a", encoding="utf-8")
            self._fh.write(json.dumps(rec.to_dict(), default=str) + "\n")
            self._fh.flush()
            if self._fh.tell() > MAX_FILE_BYTES:
                self._fh.close()
                self._fh = None
                self.path.replace(self.path.with_suffix(".jsonl.1"))
        except OSError as exc:
            log.warning("cannot append to activity log %s: %s", self.path, exc)

    def query(self, since: int = 0, service: str | None = None, kind: str | None = None,
              result: str | None = None, limit: int = 500) -> list[ActivityRecord]:
        out = [r for r in self.records if r.seq > since
               and (service is None or r.service == service)
               and (kind is None or r.kind == kind)
               and (result is None or r.result == result)]
        return out[-limit:]

    async def follow(self, since: int = 0) -> AsyncIterator[ActivityRecord]:
        q: asyncio.Queue[ActivityRecord] = asyncio.Queue()
        self._followers.add(q)
        try:
            backlog = self.query(since=since, limit=10_000)
            last = backlog[-1].seq if backlog else since
            for rec in backlog:
                yield rec
            while True:
                rec = await q.get()
                if rec.seq > last:
                    last = rec.seq
                    yield rec
        finally:
            self._followers.discard(q)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
