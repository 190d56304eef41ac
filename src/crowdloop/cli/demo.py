"""``crowdloop demo``: the whole loop on a bundled real crowd, with progress bars and a table."""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from crowdloop.cli.base import cli, console
from crowdloop.cli.checks import writable_file_or_folders

if TYPE_CHECKING:  # the demo imports the whole platform when it runs, not when `crowdloop --help` does
    from crowdloop.demo import DemoResult

TABLE_WIDTH = 150


class _Bars:
    """The demo's :class:`~crowdloop.demo.Progress` as rich progress bars, one per stage; off a
    terminal (a log, CI), one plain line per stage as it ends: the bars came out cut to 80
    columns there ("importing 250 items and 150 gold items ━━━ 400… 0:0…")."""

    def __init__(self) -> None:
        columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())  # fmt: skip
        self._lines = not console.is_terminal
        self._progress = Progress(*columns, console=console, transient=False, disable=self._lines)
        self._task: TaskID | None = None

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._finish(failed=kind is not None)
        self._progress.stop()

    def stage(self, description: str, total: int | None = None) -> None:
        self._finish()
        self._task = self._progress.add_task(description, total=total)

    def advance(self, amount: int = 1) -> None:
        if self._task is not None:
            self._progress.advance(self._task, amount)

    def _finish(self, failed: bool = False) -> None:
        """Show the stage as done; off a terminal, its line (none for a stage an error ended: the
        error says what happened). The count is what was done of what was planned."""
        if self._task is not None:
            task = self._progress.tasks[-1]
            planned, done = task.total, task.completed
            self._progress.update(self._task, total=task.total or task.completed or 1, completed=task.total or 1)
            if self._lines and not failed:
                count = f"{done:.0f}/{planned:.0f}, " if planned and planned > 1 else ""
                console.print(f"{task.description}: {count}{task.elapsed or 0:.1f} s", markup=False, highlight=False)


def _table(result: DemoResult) -> Table:
    from crowdloop.demo.report import COLUMNS, table_row

    table = Table(title=f"crowdloop demo: {len(result.rounds)} rounds in {result.seconds:.0f} s")
    for name in COLUMNS:
        table.add_column(name, justify="right")
    for metrics in result.rounds:
        table.add_row(*table_row(metrics))
    return table


@cli.command()
@click.option(
    "--dir",
    "root",
    type=click.Path(file_okay=False, path_type=Path),
    help="Working directory (default: a new temporary one).",
)
@click.option(
    "--rounds",
    type=click.IntRange(1, 20),
    default=4,
    show_default=True,
    help="Rounds of crowd, train, deploy, feedback.",
)
@click.option("--port", type=click.IntRange(1, 65535), help="Port of the demo's server (default: a free one).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seed of the sample of items, the replay order and the model.")  # fmt: skip
@click.option(
    "--dataset", type=click.Choice(["product", "rte"]), default="product", show_default=True,
    help="Bundled crowd to run on: product (Abt-Buy pairs) or rte (sentence pairs).",
)  # fmt: skip
@click.option(
    "--items", type=click.IntRange(500, 8315), help="Items sampled (default: product 3000 with 300 gold, rte all 800)."
)
@click.option(
    "--budget", type=click.FloatRange(0.1), default=40.0, show_default=True, help="Money for the crowd, in dollars."
)
@click.option("--price", type=click.FloatRange(0.001), default=0.02, show_default=True, help="Paid per answer.")
@click.option("--trials", type=click.IntRange(0), default=3, show_default=True, help="Tuning trials per training.")
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=writable_file_or_folders,
    help="HTML report (default: DIR/report.html).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the rounds as JSON on stdout instead of a table.")
def demo(root: Path | None, rounds: int, port: int | None, seed: int, dataset: str, items: int | None,
         budget: float, price: float, trials: int, report_path: Path | None, as_json: bool) -> None:  # fmt: skip
    """Run the whole loop on a bundled real crowd: crowd, labels, model, edge, feedback."""
    from crowdloop.demo import DemoConfig, run_demo
    from crowdloop.demo.report import write_report

    config = DemoConfig.for_dataset(dataset, root=root, rounds=rounds, port=port, seed=seed, items=items,
                                    budget=budget, price=price, trials=trials)  # fmt: skip
    with _Bars() as bars:
        result = run_demo(config, bars)
    path = report_path or result.root / "report.html"
    rounds_out = [{k: v for k, v in r.to_dict().items() if k != "confidences"} for r in result.rounds]
    summary = {"root": str(result.root), "report": str(path), "seconds": round(result.seconds, 1),
               "drift_source": result.drift_source, "rounds": rounds_out}  # fmt: skip
    (result.root / "rounds.json").write_text(json.dumps(summary, indent=2))  # first: a failing report loses no rounds
    path = write_report(result, path)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    out = Console()
    Console(width=max(out.width, TABLE_WIDTH)).print(_table(result))
    click.echo(f"report: {path}")
    click.echo(f"rounds as JSON: {result.root / 'rounds.json'}")
    click.echo(f"server database, models and edge state: {result.root} (README: Reopen the demo's server)")
