"""The ``crowdloop`` command: a thin skin over the library and the API.

Each command parses its options, calls one library or SDK function and renders the
result. Every :class:`CrowdloopError` becomes one line on stderr and the error's
exit code; there are no tracebacks for a user's mistake.
"""

from __future__ import annotations

import sys

import click
import pydantic
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
        _fail(error.detail, error.exit_code)
    except pydantic.ValidationError as error:
        if error.title != "Settings":
            raise
        _fail(f"the configuration: {_settings_problems(error)}", 2)
    sys.exit(0)


def _fail(detail: str, code: int) -> None:
    console.print(Text.assemble(("error: ", "bold red"), detail), highlight=False, soft_wrap=True)
    sys.exit(code)


def _settings_problems(error: pydantic.ValidationError) -> str:
    """Each bad setting as the variable an operator sets, with pydantic's reason."""
    return "; ".join(
        f"CROWDLOOP_{'_'.join(map(str, problem['loc'])).upper()}: {problem['msg']}" for problem in error.errors()
    )


__all__ = ["cli", "main"]
