"""The SDK over a connection that drops: a real `crowdloop serve` behind a TCP relay that can
throw away the server's answer after the server has acted on the request, as a proxy or a
restarting server does. Calls the server answers the same way twice are repeated; others fail
with a clear error and are not done twice."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest

from crowdloop.client import Client
from crowdloop.errors import CrowdloopError


class AnswerLosingRelay:
    """Relays TCP connections to ``upstream``; after ``lose_next_answer()``, the next answer the
    server sends is dropped and both ends of that connection are closed."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.answers_lost = 0
        self._lose = threading.Event()
        self._keep = 0  # bytes of the lost answer that still get through (0: none)
        self._hold = threading.Event()
        self._hold_seconds = 0.0
        threading.Thread(target=self._accept, daemon=True).start()

    def lose_next_answer(self, keep: int = 0) -> None:
        """Drop the next answer, after its first ``keep`` bytes (headers and part of a body)."""
        self._keep = keep
        self._lose.set()

    def hold_next_answer(self, seconds: float) -> None:
        """Delay the next answer by ``seconds``, as a server still at work (or a slow network) does."""
        self._hold_seconds = seconds
        self._hold.set()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        with suppress(OSError):  # the other direction closed the connection
            while chunk := source.recv(65536):
                if answers and self._hold.is_set():
                    self._hold.clear()
                    time.sleep(self._hold_seconds)
                if answers and self._lose.is_set():
                    self._lose.clear()
                    self.answers_lost += 1
                    sink.sendall(chunk[: self._keep])
                    break
                sink.sendall(chunk)
        for end in (source, sink):
            with suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()


@contextmanager
def relayed(server, token: str, timeout: float = 30.0) -> Iterator[tuple[Client, AnswerLosingRelay]]:
    host, port = server.url.removeprefix("http://").split(":")
    relay = AnswerLosingRelay((host, int(port)))
    client = Client(relay.url, token, timeout=timeout)
    try:
        yield client, relay
    finally:
        client.close()
        relay.close()


@pytest.fixture()
def project(server):
    _, requester = server.user("req", "requester")
    project = requester.create_project(
        name="drops", labels=["a", "b"], min_overlap=2, max_overlap=2, price=0.02, rules={"max_skips_in_row": 2}
    )
    requester.import_items(project["id"], [{"data": {"text": f"item {i}"}} for i in range(3)])
    requester.start(project["id"])
    return project


def test_a_lost_answer_to_a_submit_is_fetched_again_and_saves_the_answer_once(server, project):
    worker, _ = server.user("w", "worker")
    with relayed(server, str(worker["token"])) as (client, relay):
        task = client.next_task(project["id"])
        relay.lose_next_answer()
        saved = client.submit(task["assignment_id"], "a")
        assert relay.answers_lost == 1
        assert saved["duplicate"] is True  # the first submit was saved; the repeat returned it
        again = client.submit(task["assignment_id"], "a")
        assert again["answer_id"] == saved["answer_id"]
    answers = server.admin.status(project["id"])["answers"]
    assert answers == 1


def test_lost_answers_to_next_task_and_skip_are_repeated_without_harm(server, project):
    worker, _ = server.user("w", "worker")
    with relayed(server, str(worker["token"])) as (client, relay):
        first = client.next_task(project["id"])
        relay.lose_next_answer()
        assert client.next_task(project["id"])["assignment_id"] == first["assignment_id"]  # the same lease back
        relay.lose_next_answer()
        client.skip(first["assignment_id"])  # done on the first try; the repeat is a no-op, not a conflict
        assert relay.answers_lost == 2
        following = client.next_task(project["id"])  # two skips in a row would have stopped the worker here
        assert following["data"] != first["data"]  # another item


def test_a_lost_answer_to_a_create_is_an_error_and_not_done_twice(server):
    created, _ = server.user("req", "requester")
    with relayed(server, str(created["token"])) as (client, relay):
        relay.lose_next_answer()
        with pytest.raises(CrowdloopError, match="cannot reach the server"):
            client.create_project(name="once", labels=["a", "b"])
        assert relay.answers_lost == 1
        relay.lose_next_answer()
        assert [p["name"] for p in client.projects()] == ["once"]  # a GET is repeated; one project


def test_a_timeout_says_the_server_did_not_answer_in_time_and_may_have_done_the_request(server):
    """A timeout said "cannot reach the server" though the request had reached it and been done."""
    created, _ = server.user("req", "requester")
    with relayed(server, str(created["token"]), timeout=1.0) as (client, relay):
        relay.hold_next_answer(3.0)
        with pytest.raises(CrowdloopError, match=r"did not answer within 1 s; the request may have been done"):
            client.create_project(name="slow", labels=["a", "b"])
        assert [p["name"] for p in client.projects()] == ["slow"]


def test_an_export_cut_off_leaves_no_file_that_looks_whole(server, project, tmp_path):
    """A download cut mid-stream left a truncated file at the path (a CSV cut at a row looks valid)
    and a traceback."""
    server.admin.import_items(project["id"], [{"data": {"text": f"export row {i}"}} for i in range(300)])
    with relayed(server, server.admin_token) as (client, relay):
        whole = client.export(project["id"], "answers", "jsonl")
        relay.lose_next_answer(keep=400)  # the headers and perhaps a little of the body
        target = tmp_path / "items.jsonl"
        with pytest.raises(CrowdloopError, match="was cut off"):
            client.export(project["id"], "labels", "csv", path=target)
        assert not target.exists() and not (tmp_path / "items.jsonl.part").exists()
        client.export(project["id"], "answers", "jsonl", path=target)
        assert target.read_bytes() == whole


def test_an_export_to_a_pipe_is_written_straight_through(server, project, tmp_path):
    """-o /dev/stdout (or a pipe) failed: it tried to create /dev/stdout.part."""
    import os

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_bytes()))
    reader.start()
    with Client(server.url, server.admin_token) as client:
        client.export(project["id"], "answers", "csv", path=pipe)
        whole = client.export(project["id"], "answers", "csv")
    reader.join(30)
    assert received == [whole]
