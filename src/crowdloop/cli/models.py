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
from rich.table import Table

from crowdloop.cli.base import MAX_SEED, cli, console, spinner, stdout_console
from crowdloop.cli.checks import writable_folder
from crowdloop.cli.platform import _api_options, _client, _json_option, _print_record
from crowdloop.learning.promotion import rounded

NO_SHARED_GOLD = "no_shared_gold"  # crowdloop.learning.service.NO_SHARED_GOLD, without importing the learner


@cli.command("train")
@click.argument("project_id", type=int)
@click.option(
    "--family",
    help="logreg (default), linear_svm, gboost, naive_bayes, torch_mlp (needs PyTorch), "
    "or auto (search the scikit-learn ones).",
)
@click.option("--trials", default=0, show_default=True, type=click.IntRange(0, 1000),
              help="Optuna trials of a search (0: none unless --family auto, 10 trials, or --timeout).")  # fmt: skip
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Search time budget in seconds (over the scikit-learn families unless --family names one).",
)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, MAX_SEED),
              help="Seed of the folds, the search and the model.")  # fmt: skip
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
    """Train (or tune) a model on the project's labels, score it on gold, register and maybe promote it.

    Ctrl-C stops the waiting, not the training: the server finishes it and registers the version.
    """
    with _client(url, token) as client, spinner(f"training a model for project {project_id} on the server"):
        try:
            result = client.train_model(
                project_id, family=family, trials=trials, timeout=timeout, seed=seed, targets=targets
            )
        except KeyboardInterrupt:
            console.print(f"stopped waiting. The server goes on training: it will register the version and promote it "
                          f"if it beats production (see crowdloop models events {project_id}).")  # fmt: skip
            raise click.exceptions.Exit(130) from None
    version = result["version"]
    _print_version(version)
    console.print(f"version {version['version']}: {_verdict(result)}")
    _warn(result["comparison"])


@cli.group("models")
def models_group() -> None:
    """List, inspect, promote, download a project's model versions; their events; priorities (over the API)."""


@models_group.command("list")
@click.argument("project_id", type=int)
@_json_option("the versions as a JSON list")
@_api_options
def list_models_command(project_id: int, as_json: bool, url: str | None, token: str | None) -> None:
    """Every version of the project's model with its scores on gold (n: how many gold items) and aliases."""
    with _client(url, token) as client:
        versions = client.models(project_id)
    if as_json:
        click.echo(json.dumps(versions))
        return
    if not versions:  # an empty table said nothing
        console.print(f"project {project_id} has no model yet; train one: crowdloop train {project_id}")
        return
    table = Table()
    columns = ("version", "family", "targets", "accuracy", "macro_f1", "log_loss", "ece", "n", "labels", "aliases",
               "created")  # fmt: skip
    for column in columns:
        table.add_column(column, no_wrap=column in ("aliases", "created"))
    for v in versions:  # targets: what it learned from (labels, or the crowd's answers: train --targets crowd)
        m = v["metrics"]
        table.add_row(str(v["version"]), v["family"], str((v.get("params") or {}).get("targets", "labels")),
                      *(f"{m.get(k, float('nan')):.4f}" for k in _METRICS),
                      str(m.get("n")), str(v["lineage"].get("labels")), ",".join(v["aliases"]),
                      v["created_at"][:19])  # fmt: skip
    stdout_console().print(table)


_METRICS = ("accuracy", "macro_f1", "log_loss", "ece")


@models_group.command("show")
@click.argument("project_id", type=int)
@click.argument("ref", default="production")
@_json_option("the version as one JSON object")
@_api_options
def show_model_command(project_id: int, ref: str, as_json: bool, url: str | None, token: str | None) -> None:
    """One version, REF a number, production (the default) or candidate: metrics, per class, lineage, digest."""
    with _client(url, token) as client:
        version = client.model(project_id, ref)
    if as_json:
        click.echo(json.dumps(version))
    else:
        _print_version(version)


@models_group.command("promote")
@click.argument("project_id", type=int)
@click.argument("ref")
@click.option("--reason", required=True, help="Why, kept in the model's events.")
@_api_options
def promote_command(project_id: int, ref: str, reason: str, url: str | None, token: str | None) -> None:
    """Make a version production by hand; both versions are scored on today's gold that neither learned
    from, and the scores kept. Warns on a step down, and when the version reads fields production did not."""
    with _client(url, token) as client:
        version = client.promote_model(project_id, ref, reason)
    if not version.get("changed", True):
        console.print(f"version {version['version']} already is production; nothing changed")
        return
    comparison = version.get("comparison") or {}
    console.print(f"version {version['version']} is now production ({_score(comparison.get('candidate_score'))}); "
                  f"the previous production: {_previous(comparison)}{_on_gold(comparison)}")  # fmt: skip
    if comparison.get(NO_SHARED_GOLD):
        console.print(f"not compared: {comparison[NO_SHARED_GOLD]}")
    mine, theirs = comparison.get("candidate_score"), comparison.get("production_score")
    lower = [name for metric, name in (("accuracy", "accuracy"), ("macro_f1", "macro-F1"))
             if mine and theirs and rounded(mine)[metric] < rounded(theirs)[metric]]  # fmt: skip
    if lower:
        console.print(f"[yellow]warning:[/] the version promoted scores lower on {' and '.join(lower)} on the same "
                      "gold than the one it replaced")  # fmt: skip
    _warn(comparison)


@models_group.command("download")
@click.argument("project_id", type=int)
@click.argument("ref", default="production")
@click.option(
    "-o", "--out", "folder", required=True, type=click.Path(file_okay=False, path_type=Path), callback=writable_folder
)
@_api_options
def download_command(project_id: int, ref: str, folder: Path, url: str | None, token: str | None) -> None:
    """Download a version's artifact (model, features, ONNX) into a new folder and check its digest."""
    with _client(url, token) as client, console.status("downloading"):
        done = client.download_model(project_id, ref, folder)
    console.print(f"version {done['version']} in {done['path']} (sha256 {done['digest'][:16]}..., verified)")


@models_group.command("events")
@click.argument("project_id", type=int)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000), help="The latest this many.")
@click.option("--before", type=click.IntRange(min=1), help="Only events before this event id (the page before).")
@_json_option("every event whole, as a JSON list")
@_api_options
def events_command(
    project_id: int, limit: int, before: int | None, as_json: bool, url: str | None, token: str | None
) -> None:
    """Registrations, alias moves, promotions and rejections (with both scores), drift, oldest first.

    The table shortens long details (a drift reference's samples: "[500 values]"); --json has them whole.
    """
    with _client(url, token) as client:
        events = client.model_events(project_id, limit, before)
    if as_json:
        click.echo(json.dumps(events))
        return
    table = Table()
    for column in ("id", "at", "kind", "detail"):
        table.add_column(column, no_wrap=column != "detail")
    for event in events:
        table.add_row(str(event["id"]), event["at"][:19], event["kind"], json.dumps(_brief(event["detail"])))
    stdout_console().print(table)


def _brief(value: Any) -> Any:
    """``value`` with every list longer than five items replaced by a count (samples, histograms)."""
    if isinstance(value, dict):
        return {key: _brief(item) for key, item in value.items()}
    if isinstance(value, list):
        return f"[{len(value)} values]" if len(value) > 5 else [_brief(item) for item in value]
    return value


@models_group.command("prioritize")
@click.argument("project_id", type=int)
@click.option("--strategy", default="activelab", show_default=True,
              type=click.Choice(["random", "least_confidence", "margin", "entropy", "activelab"]))  # fmt: skip
@click.option("--batch", "batch_size", default=50, show_default=True, type=click.IntRange(1, 100_000),
              help="Items served first.")  # fmt: skip
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, MAX_SEED),
              help="Seed of the random strategy and of ties.")  # fmt: skip
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
    return "not scored" if score is None else f"accuracy {score['accuracy']:.4f}, macro-F1 {score['macro_f1']:.4f}"


def _previous(comparison: dict[str, Any]) -> str:
    if comparison.get("production") is None:
        return "none"
    if "production_error" in comparison:
        return f"version {comparison['production']}, unusable ({comparison['production_error']})"
    return f"version {comparison['production']}, {_score(comparison.get('production_score'))}"


def _on_gold(comparison: dict[str, Any]) -> str:
    """On which gold both versions were scored: how many items, and which were left out and why."""
    count = comparison.get("gold_items")
    if count is None or comparison.get("production_score") is None:
        return ""
    left = comparison.get("gold_learned") or {}
    said = [f"version {number} learned from {n}" for number, n in left.items()]
    said += [f"version {number}'s training items are not on record" for number in
             comparison.get("training_not_on_record", [])]  # fmt: skip
    return f"; both on the {count} gold items neither learned from" + (f" ({'; '.join(said)})" if said else "")


def _warn(comparison: dict[str, Any] | None) -> None:
    if comparison and comparison.get("warning"):
        console.print(f"[yellow]warning:[/] {comparison['warning']}")


def _verdict(result: dict[str, Any]) -> str:
    """Why the new version was or was not promoted, in words."""
    comparison = result["comparison"]
    if comparison.get("production") is None:
        return "promoted to production (the project's first model)"
    if "production_error" in comparison:
        return f"promoted to production, replacing {_previous(comparison)}"
    if comparison.get(NO_SHARED_GOLD):
        return f"kept as candidate, not compared with production (version {comparison['production']}): " + str(
            comparison[NO_SHARED_GOLD]
        )
    mine, on = _score(comparison["candidate_score"]), _on_gold(comparison)
    if result["promoted"]:
        return f"promoted to production ({mine}); it beats {_previous(comparison)}{on}"
    if rounded(comparison["candidate_score"]) == rounded(comparison["production_score"]):
        return f"kept as candidate: it ties production ({mine}{on}), and a candidate must score higher"
    return (f"kept as candidate ({mine}); production is {_previous(comparison)}{on}; a candidate must score no "
            "lower on accuracy nor on macro-F1, and higher on one")  # fmt: skip
