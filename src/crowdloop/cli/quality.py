"""Truth-inference commands: aggregate, agreement, methods, datasets."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from crowdloop.cli.base import cli, console, spinner, stdout_console
from crowdloop.errors import InvalidInputError

if TYPE_CHECKING:  # the commands import pandas and the library when they run: `crowdloop --help` stays quick
    import pandas as pd

    from crowdloop.quality.run import AggregationResult


def _column_options(func: Any) -> Any:
    for name in ("label", "worker", "task"):
        func = click.option(f"--{name}-col", default=name, show_default=True, help=f"Column holding the {name}.")(func)
    return func


@cli.command("aggregate")
@click.argument("answers", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dataset", help="Use a bundled data set (answers and gold) instead of a file.")
@click.option("-m", "--method", help="Aggregation method.  [default: CROWDLOOP_DEFAULT_METHOD, else default]")
@click.option("--gold", type=click.Path(dir_okay=False, path_type=Path), help="Known labels: task,label.")
@click.option("--fit-gold", is_flag=True, help="Also use the gold labels in the fit (clamped).")
@click.option(
    "-o",
    "--out",
    help="Write task,label,confidence here (.csv/.jsonl/.parquet; - = stdout). "
    "--engine spark writes a directory of part files at this path.",
)
@click.option("--workers-out", help="Write the per-worker table here.")
@click.option(
    "--engine",
    type=click.Choice(["local", "stream", "spark"]),
    default="local",
    show_default=True,
    help="local: in memory; stream: a Parquet file larger than memory; spark: on a Spark cluster.",
)
@click.option("--master", help="Spark master URL (with --engine spark only)  [default: local[*]]")
@_column_options
def aggregate_command(
    answers: Path | None,
    dataset: str | None,
    method: str | None,
    gold: Path | None,
    fit_gold: bool,
    out: str | None,
    workers_out: str | None,
    engine: str,
    master: str | None,
    task_col: str,
    worker_col: str,
    label_col: str,
) -> None:
    """Infer true labels from crowd ANSWERS (CSV, TSV, JSON Lines or Parquet: task, worker, label)."""
    from crowdloop.config import Settings
    from crowdloop.io import write_table
    from crowdloop.quality import get_aggregator
    from crowdloop.quality.run import aggregate

    _refuse_ignored_options(engine, dataset, gold, fit_gold, workers_out, master)
    if dataset is not None and (task_col, worker_col, label_col) != ("task", "worker", "label"):
        raise InvalidInputError("--task-col, --worker-col and --label-col name an ANSWERS file's columns; "
                                "a --dataset has task, worker and label.")  # fmt: skip
    _check_outputs(engine, [path for path in (answers, gold) if path is not None], out, workers_out)
    settings = Settings()
    method = method or settings.default_method
    if engine != "local":
        rename = {task_col: "task", worker_col: "worker", label_col: "label"}
        _aggregate_scaled(answers, method, out, engine, master or "local[*]", rename)
        return
    frame, gold_labels = _load_inputs(
        answers, dataset, gold, {task_col: "task", worker_col: "worker", label_col: "label"}
    )
    aggregator = get_aggregator(method)
    with _iteration_progress(f"{type(aggregator).__name__}") as progress:
        result = aggregate(
            frame, aggregator, gold_labels, fit_gold=fit_gold, progress=progress, max_memory_mb=settings.max_memory_mb
        )
    if out:
        write_table(result.labels, out)
    if workers_out:
        write_table(result.workers, workers_out)
    _print_summary(result, show_preview=not out)


def _refuse_ignored_options(
    engine: str, dataset: str | None, gold: Path | None, fit_gold: bool, workers_out: str | None, master: str | None
) -> None:
    """An option the chosen engine would not use is an error, not a silent no-op: ``--dataset``
    with stream or Spark read no data set, ``--master`` without Spark started no cluster."""
    if master is not None and engine != "spark":
        raise InvalidInputError(f"--master is for --engine spark; --engine {engine} runs in this process.")
    if engine == "local":
        return
    if gold is not None or fit_gold or workers_out is not None:
        raise InvalidInputError(f"--engine {engine} takes no --gold, --fit-gold or --workers-out (local only).")
    if dataset is not None:
        raise InvalidInputError(f"--engine {engine} reads an ANSWERS.parquet file, not --dataset (local only).")


def _check_outputs(engine: str, inputs: list[Path], out: str | None, workers_out: str | None) -> None:
    """Every output checked before any input is read: a bad second output failed after the first
    was written, a bad suffix after the whole fit, and an output on an input replaced it. Spark
    checks its own (its output is a directory, maybe not a local one)."""
    from crowdloop.io import check_not_an_input, check_output, check_writable

    outputs = [path for path in (out, workers_out) if path is not None]
    if engine == "stream":
        for path in outputs:
            if path != "-":  # refused with the engine's own words later
                check_writable(path)  # as local checks: it was found after the whole fit, exit 1
            check_not_an_input(path, inputs)
    if engine != "local":
        return
    if out == "-" and workers_out == "-":
        raise InvalidInputError("--out and --workers-out are both - (stdout): the two tables would run together.")
    for path in outputs:
        check_output(path, inputs)
    if (
        out is not None
        and workers_out is not None
        and out != "-"
        and Path(out).resolve() == Path(workers_out).resolve()
    ):
        raise InvalidInputError(f"--out and --workers-out are both {out}: the worker table would replace the labels.")


def _aggregate_scaled(
    answers: Path | None, method: str, out: str | None, engine: str, master: str, rename: dict[str, str]
) -> None:
    """``--engine stream|spark``: Parquet in, Parquet out, the fit in partitions."""
    from crowdloop.quality import BaseClassificationAggregator, get_aggregator
    from crowdloop.scale.run import aggregate_parquet

    if answers is None or out is None:
        raise InvalidInputError(f"--engine {engine} needs an ANSWERS.parquet file and --out LABELS.parquet.")
    aggregator = get_aggregator(method)
    if not isinstance(aggregator, BaseClassificationAggregator):
        raise InvalidInputError(f"--engine {engine} runs categorical aggregators only; {method!r} is numeric.")
    with _iteration_progress(f"{type(aggregator).__name__} ({engine})") as progress:
        stats = aggregate_parquet(
            answers, aggregator, out, engine=engine, master=master, rename=rename, progress=progress
        )
    table = Table(title="crowdloop aggregate", show_header=False)
    for key, value in stats.items():
        table.add_row(key, _fmt(value))
    console.print(table)


def _load_inputs(
    answers: Path | None, dataset: str | None, gold: Path | None, rename: dict[str, str]
) -> tuple[pd.DataFrame, pd.Series | None]:
    from crowdloop.datasets import load_dataset
    from crowdloop.io import read_gold, read_table, same_task_ids

    if (answers is None) == (dataset is None):
        raise InvalidInputError("give either an ANSWERS file or --dataset NAME (see `crowdloop datasets`).")
    if answers is not None:
        frame, known, _ = same_task_ids(read_table(answers, rename), None if gold is None else read_gold(gold))
        return frame, known
    bundled = load_dataset(str(dataset))
    return bundled.answers, bundled.gold if gold is None else read_gold(gold)


@contextmanager
def _iteration_progress(name: str) -> Iterator[Any]:
    """A spinner with the iteration count and the last change, on stderr."""
    with spinner(f"{name}: encoding answers") as describe:
        yield lambda iteration, change: describe(f"{name}: iteration {iteration}, change {change:.2e}")


def _print_summary(result: AggregationResult, show_preview: bool) -> None:
    stats = result.stats
    table = Table(title="crowdloop aggregate", show_header=False)
    for key in ("method", "tasks", "workers", "answers", "iterations", "seconds", "accuracy", "gold_mae", "gold_rmse"):
        if stats.get(key) is not None:
            table.add_row(key, _fmt(stats[key]))
    if "gold_tasks" in stats:
        table.add_row("scored", f"on {stats['gold_scored']} of {stats['gold_tasks']} gold tasks")
    console.print(table)
    _warn_unanswered_gold(stats.get("gold_unanswered", []))
    if show_preview:
        preview = Table(title="first labels (use --out to save all)")
        for column in result.labels.columns:
            preview.add_column(str(column))
        for row in result.labels.head(10).itertuples(index=False):
            preview.add_row(*(_fmt(value) for value in row))
        console.print(preview)


def _warn_unanswered_gold(unanswered: list[Any]) -> None:
    """Say that gold tasks went unscored, with examples: a gold file whose ids are written unlike
    the answers' (``0012`` against ``12``) matched a few tasks and the accuracy looked complete."""
    if not unanswered:
        return
    shown = ", ".join(map(str, unanswered[:2])) + (", ..." if len(unanswered) > 2 else "")
    console.print(
        f"warning: {len(unanswered)} gold task(s) have no answers and were not scored ({shown}); "
        "are the task ids written alike in both files?",
        markup=False,
        highlight=False,
    )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


@cli.command("agreement")
@click.argument("answers", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--level", type=click.Choice(["nominal", "interval"]), default="nominal", show_default=True)
@_column_options
def agreement_command(answers: Path, level: str, task_col: str, worker_col: str, label_col: str) -> None:
    """Inter-annotator agreement of ANSWERS: Krippendorff's alpha and Fleiss' kappa."""
    from crowdloop.io import read_table
    from crowdloop.quality.metrics import fleiss_kappa, krippendorff_alpha

    frame = read_table(answers, {task_col: "task", worker_col: "worker", label_col: "label"})
    table = Table(title="agreement", show_header=False)
    table.add_row("krippendorff_alpha", f"{krippendorff_alpha(frame, level):.4f}")  # type: ignore[arg-type]
    if level == "nominal":
        table.add_row("fleiss_kappa", f"{fleiss_kappa(frame):.4f}")
    console.print(table)


@cli.command("methods")
def methods_command() -> None:
    """List the aggregation methods."""
    from crowdloop.quality import CATEGORICAL_METHODS, METHODS

    table = Table(title="aggregation methods")
    table.add_column("name")
    table.add_column("answers")
    table.add_column("model")
    for name, cls in METHODS.items():
        kind = "categorical" if name in CATEGORICAL_METHODS else "numeric"
        table.add_row(name, kind, _plain((cls.__doc__ or "").strip().splitlines()[0]))
    stdout_console().print(table)


def _plain(text: str) -> str:
    """A docstring line without its Sphinx roles: ``:math:`s_w``` reads ``s_w`` on a terminal."""
    return re.sub(r":\w+:`([^`]*)`", r"\1", text).replace("``", "")


@cli.command("datasets")
def datasets_command() -> None:
    """List the bundled data sets."""
    from crowdloop.datasets import bundled_datasets, load_dataset

    table = Table(title="bundled data sets")
    for column in ("name", "tasks", "workers", "answers", "gold"):
        table.add_column(column)
    for name in bundled_datasets():
        data = load_dataset(name)
        a = data.answers
        table.add_row(name, str(a.task.nunique()), str(a.worker.nunique()), str(len(a)), str(len(data.gold)))
    stdout_console().print(table)
