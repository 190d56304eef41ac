"""The command group and the stderr console every command writes its messages to."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from crowdloop import __version__

MAX_SEED = 2**32 - 1
"""The largest seed (:data:`crowdloop.learning.models.MAX_SEED`), written out: importing that
module brings numpy, and every option is built when ``crowdloop --help`` runs."""

console = Console(stderr=True, soft_wrap=True)
"""Messages on stderr; long lines (URLs, paths) are not folded at 80 columns when it is a pipe."""

PIPED_WIDTH = 200
"""Columns of a table written to a pipe or a file: at rich's default 80, cells were cut to ``candi…``."""


@contextmanager
def spinner(description: str) -> Iterator[Callable[[str], None]]:
    """A spinner with the text and the elapsed time on stderr while work of unknown length runs
    (silent off a terminal, where it would only leave blank lines); yields a function that
    changes the text."""
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(description, total=None)
        yield lambda text: bar.update(task, description=text)


def stdout_console() -> Console:
    """Where results go: the terminal at its width, or a pipe at :data:`PIPED_WIDTH` columns."""
    terminal = Console()
    return terminal if terminal.is_terminal else Console(width=PIPED_WIDTH)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="crowdloop")
def cli() -> None:
    """crowdloop: crowdsourcing and human computation for AI, the whole loop."""
