"""``crowdloop demo``: the whole loop on a real server, a replayed real crowd and an edge runtime.

:func:`run_demo` starts ``crowdloop serve`` on an SQLite file, creates the accounts and a
dynamic-overlap project, imports a slice of the bundled ``product`` crowd and then, for each
round: the recorded workers answer through the HTTP API (the platform picks the items, stops
answers once an item is confident, pays), the answers are aggregated, a model is trained and
tuned on the labels, scored on gold and promoted if better, active learning re-orders the
open items, the edge runtime pulls the production version (ONNX), serves a chunk of unseen
items and sends the ones it is unsure about back as crowd items, which the crowd labels first
in the next round. Each round's numbers are a :class:`~crowdloop.demo.rounds.RoundMetrics`.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from crowdloop.client import Client
from crowdloop.demo.crowd import ReplayDriver, RoundWork
from crowdloop.demo.data import DEMO_SETS, DemoData, import_rows, item_fields, split_dataset
from crowdloop.demo.rounds import (
    RoundMetrics,
    label_accuracy,
    local_drift,
    read_jsonl,
    server_drift,
    stream_accuracy,
)
from crowdloop.demo.server import LocalServer
from crowdloop.deploy.edge import EdgeRuntime
from crowdloop.errors import CrowdloopError, EmptyInputError, InvalidParameterError

IMPORT_CHUNK = 1000
EDGE_WAIT_S = 120.0
TELEMETRY_WAIT_S = 20.0


class Progress(Protocol):
    """Where the demo reports what it is doing (a rich progress bar in the CLI)."""

    def stage(self, description: str, total: int | None = None) -> None: ...

    def advance(self, amount: int = 1) -> None: ...


class _Quiet:
    def stage(self, description: str, total: int | None = None) -> None:
        pass

    def advance(self, amount: int = 1) -> None:
        pass


@dataclass(frozen=True)
class DemoConfig:
    """The demo's knobs; the defaults finish in a few minutes on a 2-core machine."""

    root: Path | None = None
    rounds: int = 4
    port: int | None = None
    seed: int = 0
    dataset: str = "product"
    items: int = 3000
    gold: int = 300
    stream_per_round: int = 300
    price: float = 0.02
    budget: float = 40.0
    family: str = "logreg"
    targets: str = "crowd"
    trials: int = 3
    confidence_target: float = 0.9
    threshold: float = 0.7
    audit_rate: float = 0.02
    strategy: str = "activelab"
    batch_size: int = 100

    first_round_share: float = 0.5

    @classmethod
    def for_dataset(cls, dataset: str, **overrides: Any) -> DemoConfig:
        """The defaults of ``dataset`` (its slice sizes, see :data:`DEMO_SETS`), then ``overrides``."""
        if dataset not in DEMO_SETS:
            raise InvalidParameterError(f"the demo runs on {', '.join(DEMO_SETS)}; got {dataset!r}.")
        chosen = DEMO_SETS[dataset]
        sizes = {"items": chosen.items, "gold": chosen.gold, "stream_per_round": chosen.stream_per_round}
        return cls(dataset=dataset, **{**sizes, **{k: v for k, v in overrides.items() if v is not None}})

    def answers_per_round(self, number: int) -> int:
        """Answers round ``number`` buys: the budget split evenly, the first round a ``first_round_share`` of
        an even share (a small seed set, so the first model is the weakest)."""
        total = self.budget / self.price if self.price > 0 else self.budget
        first = total / self.rounds * self.first_round_share if self.rounds > 1 else total
        return int(first if number == 1 else (total - first) / (self.rounds - 1))


@dataclass
class DemoResult:
    """Every round's metrics and where the demo kept its files."""

    root: Path
    project_id: int
    rounds: list[RoundMetrics] = field(default_factory=list)
    seconds: float = 0.0
    drift_source: str = "local"
    dataset: str = "product"


@dataclass
class _World:
    server: LocalServer
    requester: Client
    requester_token: str
    device_token: str
    project_id: int
    driver: ReplayDriver
    data: DemoData
    clients: list[Client]
    edge: EdgeRuntime | None = None

    def close(self) -> None:
        if self.edge is not None:
            self.edge.close()
        self.driver.close()
        for client in self.clients:
            client.close()
        self.server.stop()


def run_demo(config: DemoConfig, progress: Progress | None = None) -> DemoResult:
    """Run every round; the server and the edge are stopped at the end, their files kept in ``root``."""
    if config.rounds < 1:
        raise InvalidParameterError(f"rounds must be at least 1; got {config.rounds}.")
    shown = progress or _Quiet()
    root = Path(config.root) if config.root is not None else Path(tempfile.mkdtemp(prefix="crowdloop-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    world = _set_up(config, root, shown)
    try:
        result = DemoResult(root, world.project_id, dataset=config.dataset)
        for number in range(1, config.rounds + 1):
            result.rounds.append(_round(world, config, number, shown))
    finally:
        world.close()
    result.seconds = time.perf_counter() - started
    result.drift_source = ", ".join(sorted({metrics.drift_source for metrics in result.rounds}))
    return result


def _set_up(config: DemoConfig, root: Path, progress: Progress) -> _World:
    data = split_dataset(config.dataset, config.items, config.gold, config.rounds, config.stream_per_round, config.seed)
    if (root / "crowdloop.db").exists():
        raise InvalidParameterError(f"{root} already holds a demo database; give an empty --dir.")
    progress.stage("starting crowdloop serve (SQLite)")  # after the checks: a refusal looked like the server's
    server = LocalServer(root, config.port).start()
    try:
        return _accounts_and_project(server, data, config, progress)
    except BaseException:
        server.stop()
        raise


def _accounts_and_project(server: LocalServer, data: DemoData, config: DemoConfig, progress: Progress) -> _World:
    progress.stage("creating the requester and the edge device's accounts")
    admin = Client(server.url, server.admin_token)
    requester_token = str(admin.create_user("demo-requester", "requester")["token"])
    requester = Client(server.url, requester_token)
    device = admin.create_user("demo-edge-device", "device")
    device_token = str(device["token"])
    project_id = _project(requester, data, config, progress)
    requester.grant_access(project_id, int(device["id"]))  # a device sees only the projects granted to it

    def sign_up(worker: Hashable) -> Client:
        return Client(server.url, str(admin.create_user(f"worker-{worker}", "worker")["token"]))

    driver = ReplayDriver(requester, project_id, data.answers, sign_up, data.by_content, 3, config.seed)
    return _World(server, requester, requester_token, device_token, project_id, driver, data, [requester, admin])


def _project(requester: Client, data: DemoData, config: DemoConfig, progress: Progress) -> int:
    project = requester.create_project(
        name=f"{config.dataset} (demo)", labels=data.labels, min_overlap=2, max_overlap=3,
        confidence_target=config.confidence_target, gold_share=0.0, price=config.price, budget=config.budget,
        instructions=DEMO_SETS[config.dataset].instructions,
        rules=DEMO_SETS[config.dataset].rules,
    )  # fmt: skip
    project_id = int(project["id"])
    rows = import_rows(data.pool) + import_rows(data.gold, data.truth)
    progress.stage(f"importing {len(data.pool)} items and {len(data.gold)} gold items", len(rows))
    for start in range(0, len(rows), IMPORT_CHUNK):
        chunk = rows[start : start + IMPORT_CHUNK]
        requester.import_items(project_id, chunk)
        progress.advance(len(chunk))
    requester.start(project_id)
    return project_id


def _round(world: _World, config: DemoConfig, number: int, progress: Progress) -> RoundMetrics:
    started = time.perf_counter()
    budget = config.answers_per_round(number)
    progress.stage(f"round {number}: the replayed crowd answers over HTTP", budget)
    work = world.driver.work(budget, progress.advance)
    progress.stage(f"round {number}: aggregating, training (tune: {config.trials} trials), scoring on gold")
    world.requester.aggregate(world.project_id)
    trained = world.requester.train_model(
        world.project_id, config.family, trials=config.trials, seed=config.seed, targets=config.targets
    )
    production = world.requester.model(world.project_id, "production")
    status = world.requester.status(world.project_id)
    if status["items_done"] < status["items"] - status["gold_items"]:
        progress.stage(f"round {number}: active learning sets the crowd's next items")
        _reorder(world, config)
    edge = _edge(world, config, int(production["version"]))
    chunk = world.data.stream[number - 1]
    progress.stage(f"round {number}: the edge serves {len(chunk)} unseen items", len(chunk))
    predictions = [_predict(edge, row, progress) for row in chunk.to_dict("records")]
    fed_back = _deliver(world, edge)
    return _measure(world, number, work, trained, production, chunk, predictions, fed_back, started)


def _reorder(world: _World, config: DemoConfig) -> None:
    """Let the model set the crowd's next items. The items still open may all be the edge's
    feedback, which keeps the edge's priority: then there is nothing to reorder this round."""
    try:
        world.requester.set_priorities(world.project_id, config.strategy, config.batch_size, config.seed)
    except EmptyInputError:
        return


def _edge(world: _World, config: DemoConfig, version: int) -> EdgeRuntime:
    """The edge runtime (started on the first round), once it serves production ``version``."""
    if world.edge is None:
        world.edge = EdgeRuntime(
            world.server.url, world.device_token, world.project_id, world.server.root / "edge",
            poll_interval=0.5, flush_interval=0.5, threshold=config.threshold, audit_rate=config.audit_rate,
            random_state=config.seed,
        ).start()  # fmt: skip
    deadline = time.monotonic() + EDGE_WAIT_S
    while world.edge.version != version:
        if time.monotonic() > deadline:
            raise CrowdloopError(f"the edge did not pull production version {version} in {EDGE_WAIT_S:.0f} s.")
        time.sleep(0.1)
    return world.edge


def _predict(edge: EdgeRuntime, row: Mapping[Hashable, Any], progress: Progress) -> dict[str, Any]:
    prediction = edge.predict(item_fields(row))
    progress.advance()
    return prediction


def _deliver(world: _World, edge: EdgeRuntime) -> int:
    """Wait until the edge has delivered its feedback (and, for a while, its telemetry); how many
    feedback items are new on the server."""
    before = _edge_items(world)
    edge.flush_telemetry()
    if not _drained(edge, "feedback", EDGE_WAIT_S):
        raise CrowdloopError(
            f"the edge did not deliver its feedback in {EDGE_WAIT_S:.0f} s; see {world.server.log_path}."
        )
    _drained(edge, "telemetry", TELEMETRY_WAIT_S)  # late telemetry only makes the drift check local
    world.driver.refresh()
    return _edge_items(world) - before


def _drained(edge: EdgeRuntime, kind: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while edge.outbox.size(kind) > 0:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _edge_items(world: _World) -> int:
    return sum(1 for item in world.driver.items.values() if item.external_id.startswith("edge:"))


def _measure(
    world: _World, number: int, work: RoundWork, trained: dict[str, Any], production: dict[str, Any],
    chunk: Any, predictions: list[dict[str, Any]], fed_back: int, started: float,
) -> RoundMetrics:  # fmt: skip
    status = world.requester.status(world.project_id)
    labels = read_jsonl(world.requester.export(world.project_id, "labels", "jsonl"))
    task_of = {item.id: item.task for item in world.driver.items.values()}
    labeled, accuracy = label_accuracy(labels, task_of, world.data.truth)
    edge_ids = {item.id for item in world.driver.items.values() if item.external_id.startswith("edge:")}
    feedback_labeled = int(labels["item_id"].isin(edge_ids).sum()) if not labels.empty else 0
    metrics = production.get("metrics") or {}
    confidences = [float(p["confidence"]) for p in predictions]
    psi, drifted, source = _drift(world, int(production["version"]), predictions)
    return RoundMetrics(
        round=number, labels_bought=int(status["answers"]), new_answers=work.answers, skips=work.skips,
        spent=float(status["spent"] or 0.0), labeled_items=labeled, label_accuracy=accuracy,
        model_version=int(production["version"]), promoted=bool(trained.get("promoted")),
        model_accuracy=float(metrics.get("accuracy", float("nan"))),
        model_macro_f1=float(metrics.get("macro_f1", float("nan"))), streamed=len(predictions),
        served_versions=sorted({int(p["version"]) for p in predictions}), fed_back=fed_back,
        edge_alone=1.0 - fed_back / max(len(predictions), 1),
        edge_accuracy=stream_accuracy(predictions, list(chunk["task"]), world.data.truth),
        feedback_labeled=feedback_labeled, feedback_total=len(edge_ids), drift_psi=psi, drifted=drifted,
        drift_source=source, seconds=time.perf_counter() - started, confidences=confidences,
    )  # fmt: skip


def _drift(world: _World, version: int, predictions: list[dict[str, Any]]) -> tuple[float, bool, str]:
    """The server's drift check of the served version; where its window is too small (or there is
    no drift service), the stream's confidences and class mix against the model's on the gold items."""
    checked = server_drift(world.server.url, world.requester_token, world.project_id, version)
    if checked is not None:
        return *checked, "server"
    model = world.edge.model if world.edge is not None else None
    if model is None or not predictions:
        return float("nan"), False, "none"
    reference = [model.predict(item_fields(row)) for row in world.data.gold.to_dict("records")]
    return *local_drift(
        [p.confidence for p in reference],
        _classes([str(p.label) for p in reference]),
        [float(p["confidence"]) for p in predictions],
        _classes([str(p["label"]) for p in predictions]),
    ), "local"


def _classes(labels: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return counts


def remove_root(result: DemoResult) -> None:
    """Delete the demo's directory (the CLI does when it made a temporary one and is told to)."""
    shutil.rmtree(result.root, ignore_errors=True)
