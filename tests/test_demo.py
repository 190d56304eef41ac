"""`crowdloop demo` end to end (a short run): a real server, the replayed product crowd over
HTTP, training and promotion, the edge runtime, feedback labeled by the crowd; and its report."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crowdloop.demo import DemoConfig, DemoResult, run_demo
from crowdloop.demo.data import split_dataset, split_product
from crowdloop.demo.report import _scale, _ticks, confidence_histogram, line_chart, write_report
from crowdloop.errors import InvalidParameterError
from crowdloop.learning import registry
from crowdloop.storage.db import make_engine, session_factory, unit_of_work
from crowdloop.storage.models import Item, ItemLabel

SHORT = {"rounds": 2, "items": 1400, "gold": 300, "stream_per_round": 150, "budget": 16.0, "price": 0.02, "trials": 2}


@pytest.fixture(scope="module")
def short_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    root = tmp_path_factory.mktemp("demo")
    return run_demo(DemoConfig(root=root, **SHORT))  # type: ignore[arg-type]


def _database(result: DemoResult) -> str:
    return f"sqlite:///{result.root / 'crowdloop.db'}"


@pytest.mark.slow
def test_model_accuracy_against_gold_rises_across_rounds(short_demo: DemoResult) -> None:
    """The model learns through the crowd's noise: it trains on the raw answers (the crowd model),
    where the aggregated labels of two or three answers an item left it at the majority share."""
    first, last = short_demo.rounds[0], short_demo.rounds[-1]
    assert [r.round for r in short_demo.rounds] == [1, 2]
    assert first.labels_bought < last.labels_bought
    assert last.model_accuracy >= first.model_accuracy + 0.02, (first.model_accuracy, last.model_accuracy)
    assert last.model_macro_f1 > 0.65  # the always-"no match" model scores about 0.46
    assert last.model_version > first.model_version and last.promoted
    drift = [(r.round, r.drift_psi, r.drifted) for r in short_demo.rounds]
    assert not any(drifted for *_, drifted in drift), drift  # a stationary stream: no drift alarm


@pytest.mark.slow
def test_the_edge_served_the_promoted_version(short_demo: DemoResult) -> None:
    for metrics in short_demo.rounds:
        assert metrics.streamed == SHORT["stream_per_round"]
        assert metrics.served_versions == [metrics.model_version]  # every prediction, from production
    engine = make_engine(_database(short_demo), pool_size=1)
    try:
        with unit_of_work(session_factory(engine)) as session:
            production = registry.resolve_version(session, short_demo.project_id, "production")
            assert production.version == short_demo.rounds[-1].model_version
    finally:
        engine.dispose()
    current = json.loads((short_demo.root / "edge" / "current.json").read_text())
    assert current["version"] == short_demo.rounds[-1].model_version  # what the edge verified and kept


@pytest.mark.slow
def test_fed_back_items_were_labeled_by_the_crowd(short_demo: DemoResult) -> None:
    first, last = short_demo.rounds
    assert first.fed_back > 0 and first.feedback_labeled == 0
    assert last.feedback_labeled >= first.fed_back  # round 1's feedback was labeled first in round 2
    engine = make_engine(_database(short_demo), pool_size=1)
    try:
        with unit_of_work(session_factory(engine)) as session:
            edge = select(func.count()).select_from(Item).where(Item.project_id == short_demo.project_id)
            labeled = edge.join(ItemLabel, ItemLabel.item_id == Item.id).where(Item.source == "edge")
            assert session.scalar(labeled) == last.feedback_labeled
    finally:
        engine.dispose()


@pytest.mark.slow
def test_the_report_has_the_table_and_three_plots(short_demo: DemoResult, tmp_path: Path) -> None:
    page = write_report(short_demo, tmp_path / "report.html").read_text()
    assert (
        page.count("<svg") == 3
        and "<script" not in page
        and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    )
    assert f"<td>v{short_demo.rounds[-1].model_version}" in page
    assert all(math.isfinite(r.label_accuracy) and 0.5 < r.label_accuracy <= 1 for r in short_demo.rounds)


def test_split_keeps_pool_gold_and_stream_apart() -> None:
    data = split_product(1000, 200, 2, 100, seed=3)
    tasks = [set(data.pool["task"]), set(data.gold["task"]), *(set(c["task"]) for c in data.stream)]
    assert [len(t) for t in tasks] == [600, 200, 100, 100]
    assert len(set.union(*tasks)) == 1000
    assert set(data.answers["task"]) <= set.union(*tasks)


def test_the_other_bundled_set_and_an_unknown_one() -> None:
    data = split_dataset("rte", 800, 150, 4, 100, seed=0)
    assert (len(data.pool), len(data.gold), sum(len(c) for c in data.stream)) == (250, 150, 400)
    assert set(data.truth.loc[data.gold["task"]]) == {"0", "1"}
    with pytest.raises(InvalidParameterError, match="product, rte"):
        split_dataset("temp", 400, 100, 1, 100, seed=0)  # bundled, but without item texts
    with pytest.raises(InvalidParameterError, match="the demo runs on product, rte"):
        DemoConfig.for_dataset("wsd")
    assert DemoConfig.for_dataset("rte", rounds=2, items=None).items == 800
    with pytest.raises(InvalidParameterError, match=r"^the rte set has 800 items; 2000 asked for\.$"):
        split_dataset("rte", 2000, 150, 4, 100, seed=0)  # said "2000 items leave 1450 for the pool ... needs 50"


def test_too_many_items_are_refused_before_the_server_starts(tmp_path: Path) -> None:
    """The refusal came after "starting crowdloop serve", as if the server had failed."""
    done = subprocess.run([sys.executable, "-m", "crowdloop", "demo", "--dataset", "rte", "--items", "2000", "--dir",
                           str(tmp_path / "demo")], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "error: the rte set has 800 items; 2000 asked for.\n" in done.stderr, done.stderr
    assert "starting crowdloop serve" not in done.stderr


@pytest.mark.slow
def test_rte_through_the_cli_holds_its_chance_level_workers_back(tmp_path: Path) -> None:
    """rte's busiest workers answer at chance; replayed busy-first they gave most answers and the
    labels were right about half the time (0.57 and 0.46 here at seeds 0 and 1) until the demo's
    rte project held back the workers its stop rule rates in the worse half."""
    done = subprocess.run(
        [sys.executable, "-m", "crowdloop", "demo", "--dataset", "rte", "--rounds", "2", "--items", "500", "--budget",
         "10", "--trials", "0", "--dir", str(tmp_path / "rte"), "--json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    first, second = json.loads(done.stdout)["rounds"]
    assert first["labels_bought"] == 125 and first["streamed"] == 100 and first["model_version"] == 1
    assert second["label_accuracy"] > 0.75, second
    # off a terminal, a plain line per stage: the bars were cut to 80 columns ("━━━ 400… 0:0…")
    assert re.search(r"^importing \d+ items and 150 gold items: \d+/\d+, \d+\.\d s$", done.stderr, re.MULTILINE)
    assert "━" not in done.stderr, done.stderr
    assert "rte (PASCAL RTE-1" in (tmp_path / "rte" / "report.html").read_text()


def test_confidence_histogram_and_chart() -> None:
    shares = confidence_histogram([0.5, 0.74, 0.99, 1.0])
    assert math.isclose(sum(s for _, s in shares), 1.0) and shares[-1][1] == 0.5
    svg = line_chart("t", "x", "y", {"a": [(1, 0.5), (2, float("nan")), (3, 0.9)]})
    assert svg.count("<circle") == 2


def test_chart_axes_tick_at_round_numbers() -> None:
    """Ticks were the range split in four (75.1, 600, 1,124, ...; 0.723, 0.779, ...)."""
    labels = _scale([250, 1999], 0.0, math.inf)
    assert labels == (0.0, 2500.0) and _ticks(*labels) == [0, 500, 1000, 1500, 2000, 2500]
    accuracy = _scale([0.777, 0.937], 0.0, 1.0)
    assert [round(t, 2) for t in _ticks(*accuracy)] == [0.75, 0.8, 0.85, 0.9, 0.95, 1.0]
    svg = line_chart("t", "x", "y", {"a": [(250, 0.8), (1999, 0.93)], "b": [(250, 0.86), (1999, 0.9)]})
    assert ">0.75<" in svg and ">2,000<" in svg
    assert 'viewBox="0 0 560 340"' in svg  # two legend rows under the chart, not over its lines


def test_demo_command_is_documented_in_help() -> None:
    shown = subprocess.run([sys.executable, "-m", "crowdloop", "demo", "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and "--rounds" in shown.stdout and "--report" in shown.stdout
