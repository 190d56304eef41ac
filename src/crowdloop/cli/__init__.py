"""The ``crowdloop`` command: a thin skin over the library and the API.

Each command parses its options, calls one library or SDK function and renders the
result. Every :class:`CrowdloopError` becomes one line on stderr and the error's
exit code; there are no tracebacks for a user's mistake.
"""

from __future__ import annotations

import sys

import click
from rich.text import Text

from crowdloop.cli import demo, edge, models, platform, quality, simulate  # noqa: F401 - registers the commands
from crowdloop.cli.base import cli, console
from crowdloop.errors import CrowdloopError


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command, turning crowdloop errors into one line and an exit code."""
    try:
        cli.main(args=argv, prog_name="crowdloop", standalone_mode=False)
    except click.exceptions.Abort:
        console.print("aborted")
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except CrowdloopError as error:
        console.print(Text.assemble(("error: ", "bold red"), error.detail), highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
    sys.exit(0)


__all__ = ["cli", "main"]
