"""A frontend's Placement: warm affinity first, then rendezvous hashing over workers with room.

Terminology: a *member* is a worker in the last membership read; it is *live*
while heard within SILENCE_SECONDS, not draining, and its channel has not broken
since it was last heard; it is *usable* while live and it has not refused a call
for want of room since it was last heard; it has *room* when its busy sandboxes
and their memory, plus this call, fit its capacity. A live worker that is not
usable or has no room is *full*: a call no worker takes is throttled (429) when
some worker is live, and fails (503) only when none is.

Mental model: every frontend ranks the members for a revision the same way,
by a stable hash of (worker id, revision id), highest first (rendezvous or
highest-random-weight hashing). The first usable member with room is the
revision's *home*; its sandboxes of that revision stay warm because every
frontend sends the revision there. Removing a worker remaps only the
revisions whose home it was, adding one takes about 1/M of them, so a
membership change cools about 1/M of the warm sandboxes, not all of them.
Ahead of the ranking come the workers that hold an idle warm sandbox of the
revision, as their heartbeat frames said, most idle first.

Why idle sandboxes are not counted against room: a worker evicts idle sandboxes
of other revisions to make room for a new one, so only busy ones take room.
The load a worker reports includes the calls this frontend has in flight there
at that moment; the rest of its load is other frontends'. Room is that rest
plus this frontend's own calls in flight now, which it counts as it
dispatches; the worker itself is the authority, and a refusal (``full``) takes
it out until it is heard again or one of this frontend's calls there ends.

Cost: ``candidates`` runs on every call. The ranking of a revision is computed
once per membership change (one hash per member) and cached; a call then walks
at most the members, with a few dict lookups each and one clock read.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ember.scheduling.base import SILENCE_SECONDS, WorkerInfo

Clock = Callable[[], float]

# Rankings cached at most: past it the cache starts over (a frontend serving more
# revisions than this between two membership changes pays one ranking per call).
MAX_RANKINGS = 1 << 16


def weight(worker_id: str, revision_id: str) -> int:
    """The stable 64-bit weight of a (worker, revision) pair: the same on every frontend."""
    digest = hashlib.blake2b(f"{worker_id}\0{revision_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def ranking(worker_ids: Sequence[str], revision_id: str) -> tuple[str, ...]:
    """``worker_ids`` by falling weight for ``revision_id``: its rendezvous order."""
    return tuple(sorted(worker_ids, key=lambda w: weight(w, revision_id), reverse=True))


@dataclass(slots=True)
class _Member:
    info: WorkerInfo
    heard: float  # the clock's time of the last sign of life (heartbeat row or frame)
    # Busy sandboxes and their memory of other frontends, at the last membership read.
    others_busy: int = 0
    others_memory: int = 0
    # This frontend's calls in flight there now, and their memory.
    # Invariant: never negative; each ``dispatched`` is paired with one ``finished``.
    busy: int = 0
    memory: int = 0
    # When its channel broke (lost), when it refused a call (full); None: it did not.
    # Invariant: each is cleared as soon as it is heard after that time.
    lost_at: float | None = None
    refused_at: float | None = None

    def live(self, now: float) -> bool:
        return (
            self.lost_at is None and not self.info.draining and now - self.heard < SILENCE_SECONDS
        )

    def usable(self, now: float) -> bool:
        return self.refused_at is None and self.live(now)

    def has_room(self, memory_mb: int) -> bool:
        info = self.info
        return (
            self.others_busy + self.busy < info.max_sandboxes
            and self.others_memory + self.memory + memory_mb <= info.memory_mb
        )

    def heard_at(self, when: float) -> None:
        self.heard = max(self.heard, when)
        if self.lost_at is not None and when > self.lost_at:
            self.lost_at = None
        if self.refused_at is not None and when > self.refused_at:
            self.refused_at = None


@dataclass(frozen=True)
class PlacementStatistics:
    members: int
    usable: int
    in_flight: int  # this frontend's calls dispatched and not yet finished
    warm_revisions: int  # revisions with an idle warm sandbox known somewhere


class RendezvousPlacement:
    """See ``ember.scheduling.base.Placement``: in memory, time injected, no I/O."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._members: dict[str, _Member] = {}
        self._ids: tuple[str, ...] = ()  # the ring: member ids, sorted
        self._rankings: dict[str, tuple[str, ...]] = {}  # revision id -> ranking of the ring
        self._idle: dict[str, dict[str, int]] = {}  # revision id -> worker id -> idle sandboxes
        self._idle_of: dict[str, dict[str, int]] = {}  # worker id -> revision id -> idle

    def members(self, workers: Sequence[WorkerInfo]) -> None:
        now = self._clock()
        kept: dict[str, _Member] = {}
        for info in workers:
            member = self._members.get(info.worker_id) or _Member(info, float("-inf"))
            member.info = info
            member.heard_at(now - info.silence)
            # Its report counted the calls this frontend had in flight there.
            member.others_busy = max(0, info.load.busy - member.busy)
            member.others_memory = max(0, info.load.busy_memory_mb - member.memory)
            kept[info.worker_id] = member
        for gone in self._members.keys() - kept.keys():
            self._forget_idle(gone)
        self._members = kept
        ids = tuple(sorted(kept))
        if ids != self._ids:
            self._ids = ids
            self._rankings.clear()

    def warm(self, worker_id: str, idle: Mapping[str, int]) -> None:
        member = self._members.get(worker_id)
        if member is None:  # not (or no longer) a member: nothing is sent there
            return
        member.heard_at(self._clock())
        self._forget_idle(worker_id)
        mine = {revision: count for revision, count in idle.items() if count > 0}
        self._idle_of[worker_id] = mine
        for revision, count in mine.items():
            self._idle.setdefault(revision, {})[worker_id] = count

    def candidates(self, revision_id: str, memory_mb: int) -> list[str]:
        now = self._clock()
        members = self._members
        chosen: list[str] = []
        idle = self._idle.get(revision_id)
        if idle:
            warm = [w for w, n in idle.items() if n > 0 and members[w].usable(now)]
            warm.sort(key=idle.__getitem__, reverse=True)
            chosen.extend(warm)
        for worker_id in self._ranking(revision_id):
            member = members[worker_id]
            if member.usable(now) and member.has_room(memory_mb) and worker_id not in chosen:
                chosen.append(worker_id)
        return chosen

    def dispatched(self, worker_id: str, revision_id: str, memory_mb: int) -> None:
        member = self._members.get(worker_id)
        if member is None:
            return
        member.busy += 1
        member.memory += memory_mb
        idle = self._idle.get(revision_id)
        if idle is not None and idle.get(worker_id, 0) > 0:
            self._set_idle(worker_id, revision_id, idle[worker_id] - 1)

    def finished(self, worker_id: str, revision_id: str, memory_mb: int, warm: bool) -> None:
        member = self._members.get(worker_id)
        if member is None:
            return
        member.busy = max(0, member.busy - 1)
        member.memory = max(0, member.memory - memory_mb)
        # A call ending there gave a sandbox back: the refusal was a moment's state
        # (a wave of cold starts fills a worker for a fraction of a second), so it
        # must not keep the worker out until its next heartbeat.
        member.refused_at = None
        if warm:
            known = self._idle_of.get(worker_id, {}).get(revision_id, 0)
            self._set_idle(worker_id, revision_id, known + 1)

    def full(self, worker_id: str) -> None:
        member = self._members.get(worker_id)
        if member is not None:
            member.refused_at = self._clock()

    def lost(self, worker_id: str) -> None:
        member = self._members.get(worker_id)
        if member is not None:
            member.lost_at = self._clock()
        self._forget_idle(worker_id)

    def any_live(self) -> bool:
        now = self._clock()
        return any(member.live(now) for member in self._members.values())

    def statistics(self) -> PlacementStatistics:
        now = self._clock()
        return PlacementStatistics(
            members=len(self._members),
            usable=sum(m.usable(now) for m in self._members.values()),
            in_flight=sum(m.busy for m in self._members.values()),
            warm_revisions=sum(1 for idle in self._idle.values() if any(idle.values())),
        )

    def _ranking(self, revision_id: str) -> tuple[str, ...]:
        found = self._rankings.get(revision_id)
        if found is None:
            if len(self._rankings) >= MAX_RANKINGS:
                self._rankings.clear()
            found = self._rankings[revision_id] = ranking(self._ids, revision_id)
        return found

    def _set_idle(self, worker_id: str, revision_id: str, count: int) -> None:
        mine = self._idle_of.setdefault(worker_id, {})
        if count > 0:
            mine[revision_id] = count
            self._idle.setdefault(revision_id, {})[worker_id] = count
            return
        mine.pop(revision_id, None)
        idle = self._idle.get(revision_id)
        if idle is not None:
            idle.pop(worker_id, None)
            if not idle:
                del self._idle[revision_id]

    def _forget_idle(self, worker_id: str) -> None:
        for revision_id in self._idle_of.pop(worker_id, {}):
            idle = self._idle[revision_id]
            del idle[worker_id]
            if not idle:
                del self._idle[revision_id]
