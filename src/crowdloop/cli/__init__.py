"""The ``crowdloop`` command: a thin skin over the library and the API.

Each command parses its options, calls one library or SDK function and renders the
result. Every :class:`CrowdloopError` becomes one line on stderr and the error's
exit code, and so, as a backstop, does a file, network or database failure (exit 1); there are
no tracebacks for a user's mistake.
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
        # Outside standalone mode click returns a command's ``Exit`` code instead of exiting with it:
        # `crowdloop train` interrupted said so and then exited 0.
        code = cli.main(args=argv, prog_name="crowdloop", standalone_mode=False)
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
    except OSError as error:
        _fail(_os_problem(error), 1)
    except Exception as error:
        if not _is_database_error(error):
            raise
        _fail(f"the database: {str(error).strip().splitlines()[0]}", 1)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(detail: str, code: int) -> None:
    console.print(Text.assemble(("error: ", "bold red"), detail), highlight=False, soft_wrap=True)
    sys.exit(code)


def _os_problem(error: OSError) -> str:
    """A file or network failure no command checked for, as the path and the system's reason.

    The backstop: commands check their paths and ports first, but a disk can fill or a folder
    go away while they run, and that is the machine's state, not a bug to show a traceback for.
    """
    where = f"{error.filename}: " if error.filename else ""
    return f"{where}{error.strerror or error}"


def _is_database_error(error: Exception) -> bool:
    """A SQLAlchemy error (the database went away mid-command): the backstop behind the commands'
    own checks. Found through ``sys.modules``, as a command that never touched the database did
    not import SQLAlchemy, and the CLI should not import it just to catch nothing."""
    exc = sys.modules.get("sqlalchemy.exc")
    return exc is not None and isinstance(error, exc.SQLAlchemyError)


def _settings_problems(error: pydantic.ValidationError) -> str:
    """Each bad setting as the variable an operator sets, with pydantic's reason."""
    return "; ".join(
        f"CROWDLOOP_{'_'.join(map(str, problem['loc'])).upper()}: {problem['msg']}" for problem in error.errors()
    )


__all__ = ["cli", "main"]
