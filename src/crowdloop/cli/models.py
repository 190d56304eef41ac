"""Model commands over the API, through the SDK: ``crowdloop train`` and ``crowdloop models ...``.

Training runs on the server (next to the labels and the registry); the command waits for
it with a spinner and the elapsed time, then prints the version, its scores on gold and
whether it was promoted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from crowdloop.cli.base import cli, console
from crowdloop.cli.platform import _api_options, _client, _print_record


@cli.command("train")
@click.argument("project_id", type=int)
@click.option(
    "--family",
    help="logreg (default), linear_svm, gboost, naive_bayes, torch_mlp (needs PyTorch), "
    "or auto (search the scikit-learn ones).",
)
@click.option("--trials", default=0, show_default=True, type=int, help="Optuna trials of the search (0: no search).")
@click.option("--timeout", type=float, help="Search time budget in seconds.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--targets", type=click.Choice(["labels", "crowd"]), default="labels", show_default=True,
    help="Learn from the aggregated labels, or from the raw answers (classifier and workers' confusions together).",
)  # fmt: skip
@_api_options
def train_command(
    project_id: int,
    family: str | None,
    trials: int,
    timeout: float | None,
    seed: int,
    targets: str,
    url: str | None,
    token: str | None,
) -> None:
    """Train (or tune) a model on the project's labels, score it on gold, register and maybe promote it."""
    with (
        _client(url, token) as client,
        console.status(f"training a model for project {project_id} on the server"),
    ):
        result = client.train_model(
            project_id, family=family, trials=trials, timeout=timeout, seed=seed, targets=targets
        )
    version, comparison = result["version"], result["comparison"]
    _print_version(version)
    verdict = "promoted to production" if result["promoted"] else "kept as candidate (production scores higher)"
    console.print(f"version {version['version']}: {verdict}; production {_score(comparison['production_score'])}")


@cli.group("models")
def models_group() -> None:
    """List, inspect, promote, download a project's model versions; their events; priorities (over the API)."""


@models_group.command("list")
@click.argument("project_id", type=int)
@_api_options
def list_models_command(project_id: int, url: str | None, token: str | None) -> None:
    """Every version of the project's model with its scores on gold and aliases."""
    with _client(url, token) as client:
        versions = client.models(project_id)
    table = Table()
    for column in ("version", "family", "accuracy", "macro_f1", "log_loss", "ece", "labels", "aliases", "created"):
        table.add_column(column)
    for v in versions:
        m = v["metrics"]
        table.add_row(str(v["version"]), v["family"], *(f"{m.get(k, float('nan')):.4f}" for k in _METRICS),
                      str(v["lineage"].get("labels")), ",".join(v["aliases"]), v["created_at"][:19])  # fmt: skip
    Console().print(table)


_METRICS = ("accuracy", "macro_f1", "log_loss", "ece")


@models_group.command("show")
@click.argument("project_id", type=int)
@click.argument("ref", default="production")
@_api_options
def show_model_command(project_id: int, ref: str, url: str | None, token: str | None) -> None:
    """One version (a number, production or candidate): metrics, per class, lineage, digest."""
    with _client(url, token) as client:
        _print_version(client.model(project_id, ref))


@models_group.command("promote")
@click.argument("project_id", type=int)
@click.argument("ref")
@click.option("--reason", required=True, help="Why, kept in the model's events.")
@_api_options
def promote_command(project_id: int, ref: str, reason: str, url: str | None, token: str | None) -> None:
    """Make a version production by hand."""
    with _client(url, token) as client:
        version = client.promote_model(project_id, ref, reason)
    console.print(f"version {version['version']} is now production")


@models_group.command("download")
@click.argument("project_id", type=int)
@click.argument("ref", default="production")
@click.option("-o", "--out", "folder", required=True, type=click.Path(file_okay=False, path_type=Path))
@_api_options
def download_command(project_id: int, ref: str, folder: Path, url: str | None, token: str | None) -> None:
    """Download a version's artifact (model, features, ONNX) into a new folder and check its digest."""
    with _client(url, token) as client, console.status("downloading"):
        done = client.download_model(project_id, ref, folder)
    console.print(f"version {done['version']} in {done['path']} (sha256 {done['digest'][:16]}..., verified)")


@models_group.command("events")
@click.argument("project_id", type=int)
@_api_options
def events_command(project_id: int, url: str | None, token: str | None) -> None:
    """Registrations, alias moves, promotions and rejections (with both scores), oldest first."""
    with _client(url, token) as client:
        events = client.model_events(project_id)
    table = Table()
    for column in ("at", "kind", "detail"):
        table.add_column(column)
    for event in events:
        table.add_row(event["at"][:19], event["kind"], json.dumps(event["detail"]))
    Console().print(table)


@models_group.command("prioritize")
@click.argument("project_id", type=int)
@click.option("--strategy", default="activelab", show_default=True,
              type=click.Choice(["random", "least_confidence", "margin", "entropy", "activelab"]))  # fmt: skip
@click.option("--batch", "batch_size", default=50, show_default=True, type=int, help="Items served first.")
@click.option("--seed", default=0, show_default=True, type=int)
@_api_options
def prioritize_command(
    project_id: int, strategy: str, batch_size: int, seed: int, url: str | None, token: str | None
) -> None:
    """Active learning: the deployed model sets which open items people label next."""
    with _client(url, token) as client, console.status("scoring open items"):
        summary = client.set_priorities(project_id, strategy, batch_size, seed)
    _print_record({**summary, "batch": f"{len(summary['batch'])} items, first {summary['batch'][:10]}"})


def _print_version(version: dict[str, Any]) -> None:
    metrics = {k: v for k, v in version["metrics"].items() if k != "per_class"}
    _print_record({
        "version": version["version"], "family": version["family"], "aliases": version["aliases"],
        "params": version["params"], "metrics": metrics, "per_class": version["metrics"].get("per_class"),
        "lineage": version["lineage"], "digest": version["digest"], "created_at": version["created_at"],
    })  # fmt: skip


def _score(score: dict[str, float] | None) -> str:
    return "none before" if score is None else f"accuracy {score['accuracy']:.4f}, macro-F1 {score['macro_f1']:.4f}"
