"""The case each citizen's last update stored, as this process stored it.

Every update used to read the citizen's case before the flow decided, though the process
had stored that very case one update earlier: on PostgreSQL that read was about two fifths of
the bot's CPU per update in-process (docs/performance.md). :class:`RememberedCases` keeps
what the last update's write returned, so the next update of that chat can be decided
without a read.

Why that is safe (hazard H22 in docs/safety.md):

* a case is remembered only as the committed write returned it, never before the commit;
* a decision from a remembered case is carried out only by the write that stores the
  answer, a compare-and-set on the version the decision was made from; every write to a case
  that changes what an update is decided from (the session, the routing, the status, who
  holds it) raises that version, so a copy that is no longer the stored case is refused, and
  :class:`bot.citizens.CitizenService` decides again from a read;
* anything else (deleting a citizen's data, an update applied before) is decided from a read.

A refusal also means another process, or a therapist, works on this case: that citizen is
then read every time for ``ttl`` seconds, so two instances sharing a chat do not refuse each
other's copies update after update.

Plaintext health data stays in memory only: at most ``capacity`` cases, each for ``ttl``
seconds after it was stored, dropped when the citizen deletes their data or a retention purge
runs (docs/privacy.md). Used from the event loop only: no locks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["CAPACITY", "TTL_SECONDS", "RememberedCases"]

#: cases remembered at most (the newest); about 7 kB each for a finished screening, 29 MB at most
CAPACITY = 4096
#: seconds a case is remembered after it was stored, and a refused citizen read every time
TTL_SECONDS = 600.0


class RememberedCases:
    """Per Telegram user id, the ``storage.Snapshot`` their last stored update left."""

    def __init__(
        self,
        *,
        capacity: int = CAPACITY,
        ttl: float = TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._capacity = max(0, int(capacity))
        self._ttl = ttl
        self._clock = clock
        self._cases: dict[int, tuple[Any, float]] = {}  # user id -> (snapshot, stored at), oldest first
        self._read_until: dict[int, float] = {}  # user id -> until when they are read every time
        self.hits = 0  # updates decided without a read, and refusals (for benchmarks and tests)
        self.refusals = 0

    def __len__(self) -> int:
        return len(self._cases)

    def get(self, user_id: int) -> Any | None:
        """The citizen's case as their last update stored it, or None (not remembered, or
        remembered too long ago)."""
        entry = self._cases.get(user_id)
        if entry is None:
            return None
        snapshot, stored_at = entry
        if self._clock() - stored_at > self._ttl:
            del self._cases[user_id]
            return None
        self.hits += 1
        return snapshot

    def put(self, user_id: int, snapshot: Any) -> None:
        """Remember what a committed write returned (not while the citizen is read every
        time after a refusal)."""
        now = self._clock()
        until = self._read_until.get(user_id)
        if until is not None:
            if now < until:
                self._cases.pop(user_id, None)
                return
            del self._read_until[user_id]
        self._cases.pop(user_id, None)  # re-inserted as the newest
        self._cases[user_id] = (snapshot, now)
        _keep_newest(self._cases, self._capacity)

    def refused(self, user_id: int) -> None:
        """A decision from this citizen's remembered case was refused (someone else changed
        the case): forget it, and read theirs every time for ``ttl`` seconds."""
        self.refusals += 1
        self._cases.pop(user_id, None)
        self._read_until.pop(user_id, None)
        self._read_until[user_id] = self._clock() + self._ttl
        _keep_newest(self._read_until, self._capacity)

    def forget(self, user_id: int) -> None:
        """Drop what is remembered of this citizen (they deleted their data)."""
        self._cases.pop(user_id, None)

    def clear(self) -> None:
        """Drop everything (after a retention purge)."""
        self._cases.clear()
        self._read_until.clear()


def _keep_newest(entries: dict[int, Any], capacity: int) -> None:
    while len(entries) > capacity:
        del entries[next(iter(entries))]
