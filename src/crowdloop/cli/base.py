"""The command group and the stderr console every command writes its messages to."""

from __future__ import annotations

import click
from rich.console import Console

from crowdloop import __version__

console = Console(stderr=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="crowdloop")
def cli() -> None:
    """crowdloop: crowdsourcing and human computation for AI, the whole loop."""
