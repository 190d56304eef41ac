"""`crowdloop simulate`: replay a recorded crowd under one policy and report what it cost and got."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from crowdloop.cli.base import MAX_SEED, cli, console, stdout_console
from crowdloop.errors import InvalidInputError, MissingColumnsError
from crowdloop.urls import server_url

if TYPE_CHECKING:  # imported when the command runs: `crowdloop --help` needs no pandas or scikit-learn
    import pandas as pd

    from crowdloop.sim import Policy, ReplayedCrowd

# The option's choices and defaults, written out for the same reason; tests/test_cli.py checks them
# against crowdloop.quality.CATEGORICAL_METHODS, crowdloop.learning's STRATEGIES and FAMILIES, and ActiveLearning.
AGGREGATORS = ["default", "majority_vote", "wawa", "zero_based_skill", "dawid_skene", "one_coin_dawid_skene",
               "shrunk_dawid_skene", "glad", "mace", "ibcc"]  # fmt: skip
STRATEGIES = ["random", "least_confidence", "margin", "entropy", "activelab"]
FAMILIES = ["logreg", "linear_svm", "gboost", "naive_bayes", "torch_mlp"]

POLICIES_OF_OPTION = {
    "overlap": ("fixed",),
    "aggregator": ("fixed",),
    "confidence_target": ("dynamic",),
    "min_overlap": ("dynamic",),
    "max_overlap": ("dynamic", "active"),
    "strategy": ("active",),
    "retrain_every": ("active",),
    "model": ("active",),
    "targets": ("active",),
    "control_share": ("fixed", "dynamic"),
    "qualification": ("dynamic",),
}
"""The policies that read each option (by parameter name); the others refuse it when it is given."""

ROWS = [
    ("labels_bought", "labels bought"),
    ("labels_per_item", "labels per item"),
    ("label_accuracy", "label accuracy (gold)"),
    ("model_accuracy", "model accuracy against gold"),
    ("cost", "cost"),
    ("items", "items"),
    ("items_labeled", "items labeled"),
]


def _policy(
    name: str, overlap: int, aggregator: str, target: float, min_overlap: int, max_overlap: int, qualification: int
) -> Policy:
    from crowdloop.sim import DynamicOverlap, FixedOverlap

    if name == "fixed":
        return FixedOverlap(overlap=overlap, aggregator=aggregator)
    return DynamicOverlap(confidence_target=target, min_overlap=min_overlap, max_overlap=max_overlap,
                          qualification=qualification)  # fmt: skip


def _control(gold: pd.Series, share: float, qualification: int, seed: int) -> pd.Series | None:
    """The gold tasks that become control tasks: a random ``share`` of them, drawn from the seed."""
    from crowdloop.sim.driver import control_sample

    if qualification and share == 0:
        raise click.UsageError("--qualification needs control tasks: give --control-share (e.g. 0.025).")
    return None if share == 0 else control_sample(gold, share, seed)


def _active(crowd: ReplayedCrowd, gold: pd.Series, items: pd.DataFrame | None, options: dict[str, Any]) -> Policy:
    from crowdloop.sim.active import ActiveLearning

    if items is None:
        raise click.UsageError("--policy active needs --items: the model learns from the items' fields.")
    if options["url"]:  # the server's assignment engine would choose the items, not the model
        raise click.UsageError("--policy active runs in-process only; drop --url.")
    return ActiveLearning(strategy=options["strategy"], retrain_every=options["retrain_every"],
                          max_overlap=options["max_overlap"], family=options["model"], evaluation=gold,
                          classes=crowd.labels, targets=options["targets"])  # fmt: skip


@cli.command("simulate")
@click.option("--answers", "answers_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Recorded answers to replay: task, worker, label (optional seconds).")  # fmt: skip
@click.option("--gold", "gold_path", type=click.Path(dir_okay=False, path_type=Path),
              help="True labels: task, label.")  # fmt: skip
@click.option("--dataset", help="A bundled data set (answers, gold and items) instead of the files.")
@click.option("--items", "items_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Item table (column task or id), for policies that read the items.")  # fmt: skip
@click.option("--policy", type=click.Choice(["fixed", "dynamic", "active"]), default="dynamic", show_default=True)
@click.option("--overlap", default=5, show_default=True, type=click.IntRange(min=1), help="fixed: answers per item.")
@click.option("--aggregator", default="majority_vote", show_default=True, type=click.Choice(AGGREGATORS),
              help="fixed: how labels are inferred.")  # fmt: skip
@click.option("--confidence-target", default=0.95, show_default=True, type=click.FloatRange(0.5, 1.0, min_open=True),
              help="dynamic: stop at this posterior.")  # fmt: skip
@click.option("--min-overlap", default=1, show_default=True, type=click.IntRange(min=1),
              help="dynamic: answers before the rule may stop.")  # fmt: skip
@click.option("--max-overlap", type=click.IntRange(min=1),
              help="dynamic, active: answers at most (default: dynamic 10, active 3).")  # fmt: skip
@click.option("--strategy", type=click.Choice(STRATEGIES), default="activelab", show_default=True,
              help="active: how the next items are chosen.")  # fmt: skip
@click.option("--retrain-every", default=200, show_default=True, type=click.IntRange(min=1),
              help="active: retrain the model after this many labels.")  # fmt: skip
@click.option("--family", "--model", "model", default="logreg", show_default=True,
              type=click.Choice(FAMILIES), help="active: model family (as crowdloop train's --family).")  # fmt: skip
@click.option("--targets", type=click.Choice(["labels", "crowd"]), default="labels", show_default=True,
              help="active: the model learns from Dawid-Skene labels or from the answers (crowd model).")  # fmt: skip
@click.option("--control-share", default=0.0, show_default=True, type=click.FloatRange(0.0, 0.5),
              help="fixed, dynamic: this share of the gold tasks are control tasks the policy knows (left out of "
              "the items and the accuracy; their answers are paid for).")  # fmt: skip
@click.option("--qualification", default=0, show_default=True, type=click.IntRange(min=0),
              help="dynamic: each worker's first N tasks are control tasks (a qualification test).")  # fmt: skip
@click.option("--budget", type=click.IntRange(min=1),
              help="Buy at most this many labels (an item left without any counts as wrong).")  # fmt: skip
@click.option("--price", default=0.0, show_default=True, type=click.FloatRange(min=0.0),
              help="Price of one label (for the cost).")  # fmt: skip
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, MAX_SEED), help="Replay order.")
@click.option("--url", help="Run on this crowdloop server (the workers use the API) instead of in-process.")
@click.option("--token", help="With --url: an admin token (default: CROWDLOOP_API_TOKEN).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object on stdout.")
def simulate_command(
    answers_path: Path | None,
    gold_path: Path | None,
    dataset: str | None,
    items_path: Path | None,
    policy: str,
    overlap: int,
    aggregator: str,
    confidence_target: float,
    min_overlap: int,
    max_overlap: int | None,
    strategy: str,
    retrain_every: int,
    model: str,
    targets: str,
    control_share: float,
    qualification: int,
    budget: int | None,
    price: float,
    seed: int,
    url: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Replay a recorded crowd under one policy: labels bought, labels per item, accuracy, cost."""
    from crowdloop.sim import ReplayedCrowd, run_in_process, run_over_http
    from crowdloop.sim.active import ActiveLearning

    given = _given_options()
    _refuse_options_of_other_policies(policy, given)
    if url:
        server_url(url)  # before the inputs are read
    elif "token" in given:
        raise click.UsageError("--token is for --url; a run in this process takes none.")
    answers, gold, items, source = _inputs(answers_path, gold_path, dataset, items_path)
    crowd = ReplayedCrowd(answers)
    if len(crowd.labels) < 2:
        raise InvalidInputError(f"{source}: every answer is {crowd.labels[0]!r}; a crowd to replay needs two labels.")
    asked = {"overlap": overlap, "min_overlap": min_overlap, "max_overlap": max_overlap}
    _refuse_more_answers_than_recorded(crowd, source, {given[name]: asked[name] for name in asked if name in given})
    gold = _checked_gold(gold, crowd, source)  # items are checked by run_in_process, before its first task
    if policy == "active":
        options = {
            "strategy": strategy,
            "retrain_every": retrain_every,
            "max_overlap": max_overlap or ActiveLearning.max_overlap,
            "model": model,
            "targets": targets,
            "url": url,
        }
        chosen = _active(crowd, gold, items, options)
    else:
        chosen = _policy(policy, overlap, aggregator, confidence_target, min_overlap, max_overlap or 10, qualification)
    control = _control(gold, control_share, qualification, seed)
    with _Bar(_title(policy)) as advance:
        if url:
            result = run_over_http(url, _admin_token(token), crowd, chosen, gold=control, budget=budget, price=price,
                                   random_state=seed, progress=advance)  # fmt: skip
        else:
            result = run_in_process(crowd, chosen, gold=control, items=items, budget=budget, random_state=seed,
                                    progress=advance)  # fmt: skip
    _print(result.summary(gold, price), as_json)


def _given_options() -> dict[str, str]:
    """The options given on the command line or in the environment (not left at their default),
    by parameter name, each with the flag it is written as."""
    from click.core import ParameterSource

    context = click.get_current_context()
    given = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    return {parameter.name: parameter.opts[0] for parameter in context.command.params
            if parameter.name and context.get_parameter_source(parameter.name) in given}  # fmt: skip


def _refuse_options_of_other_policies(policy: str, given: dict[str, str]) -> None:
    """An option the chosen policy does not read is an error, not a silent no-op, as ``aggregate``
    refuses an option its engine would ignore: ``--policy fixed --confidence-target 0.6`` ran fixed
    overlap as if it had not been given."""
    for name, flag in given.items():
        policies = POLICIES_OF_OPTION.get(name, (policy,))
        if policy not in policies:
            raise click.UsageError(
                f"{flag} is for --policy {' or '.join(policies)}; --policy {policy} does not read it."
            )


def _refuse_more_answers_than_recorded(crowd: ReplayedCrowd, source: Path | str, asked: dict[str, int | None]) -> None:
    """A replay can buy no more answers for a task than were recorded for it: ``--overlap 50`` on a
    crowd of 10 answers per task ran as ``--overlap 10`` and said nothing. ``asked``: flag -> value."""
    most = crowd.most_answers_per_task()
    for flag, value in asked.items():
        if value is not None and value > most:
            raise click.UsageError(
                f"{source} has at most {most} answers per task; {flag} {value} cannot be replayed "
                f"(give {most} or fewer)."
            )


def _inputs(
    answers: Path | None, gold: Path | None, dataset: str | None, items: Path | None
) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame | None, str]:
    """Answers, gold, items (or None) and where they came from: the files, or a bundled data set."""
    from crowdloop.datasets import load_dataset
    from crowdloop.io import read_gold, read_table, same_task_ids

    if dataset is not None:
        if answers is not None or gold is not None:
            raise click.UsageError("give --dataset or --answers and --gold, not both.")
        data = load_dataset(dataset)
        bundled = None if data.items is None else _indexed(data.items, dataset)
        return data.answers, data.gold, _read_items(items) if items is not None else bundled, dataset
    if answers is None or gold is None:
        raise click.UsageError("give --answers and --gold (files), or --dataset NAME (see crowdloop datasets).")
    frame, known, indexed = same_task_ids(read_table(answers), read_gold(gold), _read_items(items))
    assert known is not None  # it was given
    return frame, known, indexed, str(gold)


def _checked_gold(gold: pd.Series, crowd: ReplayedCrowd, path: Path | str) -> pd.Series:
    """The gold labels as the answers write them; an error if they share no task with the answers or
    name a label nobody answered (the accuracy would then be nonsense, not a number to read)."""
    import pandas as pd

    names = {str(label): label for label in crowd.labels}
    common = gold.index.intersection(pd.Index(crowd.tasks))
    if common.empty:
        raise InvalidInputError(f"{path}: no gold task is among the answers' {len(crowd.tasks)} tasks.")
    unknown = sorted({str(label) for label in gold.loc[common]} - set(names))
    if unknown:
        raise InvalidInputError(
            f"{path}: gold label(s) {unknown[:5]} are not among the answers' labels {sorted(names)}."
        )
    return gold.loc[common].map(lambda label: names[str(label)])


def _admin_token(token: str | None) -> str:
    from crowdloop.config import Settings

    settings = Settings()
    secret = token or (settings.api_token.get_secret_value() if settings.api_token else None)
    if not secret:
        raise click.UsageError("--url needs an admin token: --token or CROWDLOOP_API_TOKEN.")
    return secret


def _read_items(path: Path | None) -> pd.DataFrame | None:
    from crowdloop.io import read_table

    return None if path is None else _indexed(read_table(path), path)


def _indexed(frame: pd.DataFrame, source: Path | str) -> pd.DataFrame:
    key = "task" if "task" in frame.columns else "id" if "id" in frame.columns else None
    if key is None:
        raise MissingColumnsError(f"{source}: items need a task (or id) column.")
    return frame.set_index(key)


class _Bar:
    """A progress bar of labels bought on stderr; gone when the run ends."""

    def __init__(self, description: str) -> None:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self._progress = Progress(*columns, console=console, transient=True, disable=not console.is_terminal)
        self._task = self._progress.add_task(description, total=None)
        self._updated = float("-inf")

    def __enter__(self) -> Any:
        self._progress.start()
        return self.advance

    def __exit__(self, *_: object) -> None:
        self._progress.stop()

    def advance(self, done: int, total: int) -> None:
        """Called per label bought: in-process, tens of thousands a second, so the bar is updated
        at most ten times a second (every 50th label, as it was, showed 0/? for a minute over HTTP)."""
        now = time.monotonic()
        if now - self._updated >= 0.1 or done == total:
            self._updated = now
            self._progress.update(self._task, completed=done, total=total)


def _print(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:  # NaN (nothing to measure) as null: strict JSON has no NaN
        click.echo(json.dumps({k: None if isinstance(v, float) and v != v else v for k, v in summary.items()}))
        return
    table = Table(title=f"simulation: {_title(summary['policy'])}", show_header=False)
    for key, name in ROWS:
        if key in summary:
            table.add_row(name, _fmt(summary[key]))
    for key, value in summary.items():
        if key not in dict(ROWS) and key != "policy":
            table.add_row(key.replace("_", " "), _fmt(value))
    stdout_console().print(table)
    unlabeled = summary.get("items", 0) - summary.get("items_labeled", 0)
    if unlabeled > 0 and "label_accuracy" in summary:
        click.echo(f"{unlabeled} items got no label (budget) and count as wrong in the label accuracy.")


def _title(policy: str) -> str:
    return "active learning" if policy == "active" else f"{policy} overlap"


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


__all__ = ["simulate_command"]
