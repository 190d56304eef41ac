"""The edge's outbox (a SQLite file) and its telemetry summaries, without a server."""

from __future__ import annotations

import time

import pytest

from crowdloop.deploy.outbox import Outbox
from crowdloop.deploy.telemetry import BINS, EdgeMetrics, Telemetry


def test_outbox_keeps_entries_until_acknowledged_and_across_reopening(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite", min_backoff=10.0)
    ids = [box.put("feedback", {"n": n}) for n in range(5)]
    box.put("telemetry", {"batch": 1})
    assert box.put("feedback", {"n": 0}, entry_id=ids[0]) == ids[0]  # same id: not queued twice
    assert box.size("feedback") == 5 and box.size() == 6
    due = box.due("feedback", limit=3)
    assert [e.payload["n"] for e in due] == [0, 1, 2] and [e.id for e in due] == ids[:3]
    box.ack([e.id for e in due[:2]])
    assert box.defer([due[2]]) == 10.0  # failed: waits min_backoff, then twice as long, ...
    assert [e.payload["n"] for e in box.due("feedback")] == [3, 4]
    later = box.due("feedback", now=time.time() + 11)
    assert [e.payload["n"] for e in later] == [2, 3, 4] and later[0].attempts == 1
    box.close()
    reopened = Outbox(tmp_path / "outbox.sqlite")
    assert reopened.size("feedback") == 3 and reopened.size("telemetry") == 1
    reopened.close()


def test_back_off_doubles_up_to_its_cap(tmp_path):
    box = Outbox(tmp_path / "o.sqlite", min_backoff=1.0, max_backoff=5.0)
    box.put("feedback", {})
    waits = []
    for _ in range(5):
        entry = box.due("feedback", now=time.time() + 100)
        waits.append(box.defer(entry))
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]
    box.close()


def test_telemetry_summarises_each_version_then_starts_afresh():
    telemetry = Telemetry(["text"], random_state=0)
    for k in range(300):
        telemetry.record(1, "match" if k % 3 else "other", 0.5 + (k % 50) / 100, 1e-4, {"text": "ab" if k % 2 else ""})
    telemetry.record(2, "match", 0.99, 2e-4, {"text": "abcd"})
    batches = telemetry.drain()
    assert [b["model_version"] for b in batches] == [1, 2]
    first = batches[0]
    assert first["predictions"] == 300 and first["class_counts"] == {"other": 100, "match": 200}
    assert len(first["confidence_histogram"]) == BINS and sum(first["confidence_histogram"]) == 300
    assert first["confidence_histogram"][10] == 6 * 5  # confidences 0.50..0.54, six times each
    assert len(first["confidence_sample"]) == 256 and first["confidence_mean"] == pytest.approx(0.745)
    assert first["input_stats"]["text"] == {"mean_length": 1.0, "empty_share": 0.5}
    assert telemetry.drain() == []


def test_metrics_render_as_prometheus_text():
    metrics = EdgeMetrics()
    metrics.observe(3, 0.8, 5e-5)
    metrics.queue.labels("feedback").set(4)
    text = metrics.text().decode()
    assert 'crowdloop_edge_predictions_total{version="3"} 1.0' in text
    assert 'crowdloop_edge_outbox_items{kind="feedback"} 4.0' in text
    assert 'crowdloop_edge_predict_seconds_bucket{le="0.0001"} 1.0' in text
    assert 'crowdloop_edge_confidence_bucket{le="0.8"} 1.0' in text


def test_a_full_outbox_drops_the_oldest_of_that_kind_and_counts_them(tmp_path):
    drops = []
    box = Outbox(tmp_path / "o.sqlite", max_entries=3, on_drop=lambda kind, n: drops.append((kind, n)))
    for n in range(5):
        box.put("feedback", {"n": n})
    box.put("telemetry", {"batch": 1})
    assert box.size("feedback") == 3 and box.size("telemetry") == 1
    assert [e.payload["n"] for e in box.due("feedback")] == [2, 3, 4]  # the newest kept
    assert box.dropped == {"feedback": 2, "telemetry": 0} and drops == [("feedback", 1), ("feedback", 1)]
    box.close()
    reopened = Outbox(tmp_path / "o.sqlite", max_entries=3)
    assert reopened.size("feedback") == 3 and [e.payload["n"] for e in reopened.due("feedback")] == [2, 3, 4]
    reopened.close()
    with pytest.raises(ValueError, match="max_entries must be at least 1"):
        Outbox(tmp_path / "other.sqlite", max_entries=0)


def test_the_edge_runtime_counts_what_a_full_outbox_dropped(tmp_path, caplog):
    from crowdloop.deploy.edge import EdgeRuntime

    runtime = EdgeRuntime("http://127.0.0.1:9", "token", 1, tmp_path, outbox_limit=2)  # no server: never started
    for n in range(4):
        runtime.outbox.put("feedback", {"n": n})
    text = runtime.metrics.text().decode()
    assert 'crowdloop_edge_outbox_dropped_total{kind="feedback"} 2.0' in text
    assert sum("outbox full" in record.getMessage() for record in caplog.records) == 1  # once a minute, not per drop
    runtime.close()


def test_the_edge_says_once_that_the_server_is_away_and_once_that_it_is_back(tmp_path, caplog):
    """Every sync step logged "server away" each time it ran, every second while the server was down."""
    import logging

    import httpx

    from crowdloop.deploy.edge import EdgeRuntime
    from crowdloop.deploy.link import ServerLink

    up = False

    def server(request: httpx.Request) -> httpx.Response:
        if not up:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(404, json={"detail": "project 1 has no model version 'production'."})

    runtime = EdgeRuntime("http://127.0.0.1:9", "token", 1, tmp_path)  # never started: steps run here
    runtime.link = ServerLink("http://127.0.0.1:9", "token", 1, transport=httpx.MockTransport(server))
    runtime.outbox.put("feedback", {"data": {"text": "x"}})

    def said(words: str) -> int:
        return sum(words in record.getMessage() for record in caplog.records)

    with caplog.at_level(logging.INFO, logger="crowdloop.edge"):
        for _ in range(5):
            runtime._quietly(runtime.refresh)
            runtime._quietly(runtime._sync)  # backs off after its first failure: nothing sent, nothing proven
        assert said("server away") == 1 and said("server back") == 0
        assert "connection refused" in runtime._problems[runtime.refresh]
        up = True
        runtime._quietly(runtime._sync)  # still backing off: it did not reach the server
        assert said("server back") == 0
        for _ in range(3):
            runtime._quietly(runtime.refresh)
        assert said("server back") == 1 and runtime.refresh not in runtime._problems
        up = False
        runtime._quietly(runtime.refresh)
        assert said("server away") == 2  # away again: said again, once
    runtime.close()
