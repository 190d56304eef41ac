"""The replayed crowd (``product`` or ``rte``) answering through the real HTTP API, round after round.

Every recorded worker is a worker account; the server chooses each item (its assignment
engine: priorities, dynamic overlap, max overlap) and the worker gives the answer they really
gave, or skips an item they never answered (the platform then never offers it to them again).

Who asks next is the only thing the driver decides. Asking at random would waste most
requests on skips (a worker answered a few percent of the items), so the driver keeps a
mirror of the queue (priority, id, answers, done; read from the API every so often) and sends
a worker who really answered the item at the head of the queue. When the server hands out
another item than the one expected, the expected one is no longer open (the server's own
stop rule closed it) and the mirror learns that without asking.

A task does not name its item (workers never see item ids: gold would stand out by them), so
the driver, who is the requester too, finds the item by its content: a project holds each
content once (:func:`~crowdloop.crowd.dedup.content_hash`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from crowdloop.client import Client
from crowdloop.crowd.dedup import content_hash
from crowdloop.errors import ConflictError, PermissionDeniedError

REFRESH_EVERY = 100
Progress = Callable[[int], None]


@dataclass
class _Item:
    id: int
    external_id: str
    task: Hashable | None
    priority: float
    answers: int
    done: bool

    def key(self) -> tuple[float, int]:
        return (-self.priority, -self.id)  # the server's order: priority, then newest first


@dataclass
class RoundWork:
    """What one round of crowd work did."""

    answers: int = 0
    skips: int = 0
    requests: int = 0
    answered_items: set[int] = field(default_factory=set)


class ReplayDriver:
    """Recorded workers as logged-in SDK clients; :meth:`work` buys up to a number of answers.

    ``sign_up(worker)`` makes a worker's account and returns their client, the first time the
    worker turns up. Among the recorded workers of the item at the head of the queue, one is
    picked in proportion to how much they answered in the recording (busy workers turn up
    more often, as in :class:`~crowdloop.sim.ReplayedCrowd`).
    """

    def __init__(
        self, requester: Client, project_id: int, answers: pd.DataFrame, sign_up: Callable[[Hashable], Client],
        by_content: dict[str, Hashable], max_overlap: int, random_state: int = 0,
    ) -> None:  # fmt: skip
        self.requester, self.project_id, self.sign_up = requester, project_id, sign_up
        self.workers: dict[Hashable, Client] = {}
        self.activity = answers.groupby("worker").size().to_dict()
        self.by_content, self.max_overlap = by_content, max_overlap
        self.recorded: dict[Hashable, dict[Hashable, str]] = {}
        for task, worker, label in zip(answers["task"], answers["worker"], answers["label"], strict=True):
            self.recorded.setdefault(task, {})[worker] = str(label)
        self.given: dict[int, set[Hashable]] = {}
        self.items: dict[int, _Item] = {}
        self.item_of: dict[str, int] = {}
        """Every item's id (gold too) by its content hash: how a task is matched to its item."""
        self.user_ids: dict[Hashable, int] = {}
        self.held_back: set[Hashable] = set()
        self.rng = np.random.default_rng(random_state)

    def refresh(self) -> None:
        """Read every item's state, and who the project holds back or bans, from the API into the mirror."""
        for row in self.requester.iter_items(self.project_id):
            key = content_hash(row["data"])
            self.item_of[key] = int(row["id"])
            if not row["is_gold"]:
                self.items[int(row["id"])] = self._item(row, key)
        kept_off = {int(row["worker_id"]) for row in self.requester.workers(self.project_id)
                    if row["held_back"] or row["banned"]}  # fmt: skip
        self.held_back = {worker for worker, user in self.user_ids.items() if user in kept_off}

    def _item(self, row: dict[str, Any], key: str) -> _Item:
        task = self.by_content.get(key)
        return _Item(
            int(row["id"]),
            str(row["external_id"] or ""),
            task,
            float(row["priority"] or 0.0),
            int(row["answers"]),
            bool(row["done"]),
        )

    def work(self, budget: int, progress: Progress | None = None) -> RoundWork:
        """Let the crowd answer until ``budget`` answers are bought or nobody can do an open item."""
        self.refresh()
        done, exhausted = RoundWork(), set[Hashable]()
        while done.answers < budget:
            choice = self._choose(exhausted)
            if choice is None:
                break
            item, worker = choice
            answered = self._turn(item, worker, exhausted, done)
            if answered and progress is not None:
                progress(1)
            if answered and done.answers % REFRESH_EVERY == 0:
                self.refresh()
        return done

    def _open(self) -> list[_Item]:
        found = [i for i in self.items.values() if not i.done and i.answers < self.max_overlap and i.task is not None]
        return sorted(found, key=_Item.key)

    def _choose(self, exhausted: set[Hashable]) -> tuple[_Item, Hashable] | None:
        """The first open item some recorded worker can still be sent to, and one such worker.

        A worker the project holds back (or banned) is not sent: the server gives them only items
        no other worker can still take, which a replayed worker has almost never answered, so each
        visit was a skip, and on ``product`` the busiest held-back workers skipped through
        thousands of items for every answer bought.
        """
        kept_off = exhausted | self.held_back
        for item in self._open():
            given = self.given.get(item.id, set())
            able = [w for w in self.recorded.get(item.task, {}) if w not in given and w not in kept_off]
            if able:
                weights = np.array([self.activity[w] for w in able], dtype=float)
                return item, able[int(self.rng.choice(len(able), p=weights / weights.sum()))]
        return None

    def _turn(self, expected: _Item, worker: Hashable, exhausted: set[Hashable], done: RoundWork) -> bool:
        """One request for work by ``worker``; True when they answered."""
        client = self._client(worker)
        done.requests += 1
        try:
            task = client.next_task(self.project_id)
        except (ConflictError, PermissionDeniedError):  # banned, capped, out of budget
            task = None
        if task is None:
            exhausted.add(worker)
            return False
        return self._settle(client, task, expected, worker, done)

    def _client(self, worker: Hashable) -> Client:
        """The worker's logged-in client; their account is made when they first turn up."""
        if worker not in self.workers:
            self.workers[worker] = self.sign_up(worker)
            self.user_ids[worker] = int(self.workers[worker].me()["id"])
        return self.workers[worker]

    def close(self) -> None:
        for client in self.workers.values():
            client.close()

    def _settle(self, client: Client, task: dict[str, Any], expected: _Item, worker: Hashable, done: RoundWork) -> bool:
        key = content_hash(task["data"])
        if key not in self.item_of:  # new since the last refresh (an edge feedback item)
            self.refresh()
            expected = self.items.get(expected.id, expected)
        item_id = self.item_of[key]
        self.given.setdefault(item_id, set()).add(worker)
        item = self.items.get(item_id)
        if item is None:  # a gold item: the mirror follows only the items the crowd labels
            item = self.items[item_id] = _Item(item_id, "", self.by_content.get(key), 0.0, 0, False)
        if item_id != expected.id and expected.key() < item.key():
            expected.done = True  # it was ahead of the one given, so the server no longer offers it
        label = self.recorded.get(item.task, {}).get(worker)
        done.requests += 1
        if label is None:
            client.skip(int(task["assignment_id"]))
            done.skips += 1
            return False
        client.submit(int(task["assignment_id"]), label=label)
        item.answers += 1
        done.answers += 1
        done.answered_items.add(item_id)
        return True
