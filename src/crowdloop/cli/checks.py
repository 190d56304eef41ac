"""Click callbacks that check a path option can be written before the command's work starts.

Without them a command found out only when it wrote: ``demo --report`` after its whole run (and
a traceback), ``export -o`` and ``models download -o`` after the download. Each check really
writes (and removes what it made): ``os.access`` answers yes to root where the file system says
no (``/sys``, a read-only mount).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click


def writable_file(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """``value`` can be created (it is, then removed) or, if it is a file, opened for appending
    (nothing is written). A pipe or a device (``/dev/stdout``) is left for the command to open:
    opening a pipe would wait for its reader. ``-`` is standard output."""
    if value is None or str(value) == "-":
        return value
    try:
        if not value.exists():
            value.open("xb").close()
            value.unlink()
        elif value.is_file():
            value.open("ab").close()
    except OSError as error:
        raise click.BadParameter(f"cannot write {value}: {error.strerror}.") from None
    return value


def writable_folder(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """``value``, or the nearest folder above it that exists (where it would be made), takes a
    new folder (one is made and removed)."""
    if value is None:
        return value
    base = value
    while not base.exists():
        base = base.parent
    if not base.is_dir():
        raise click.BadParameter(f"{base} is not a folder.")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".crowdloop-check-", dir=base))
    except OSError as error:
        raise click.BadParameter(f"cannot write in {base}: {error.strerror}.") from None
    return value


def writable_file_or_folders(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """:func:`writable_file`, for a command that makes the missing folders above the file
    (``demo --report new/report.html``): then the folders must be possible to make."""
    if value is not None and not value.parent.exists():
        writable_folder(ctx, param, value.parent)
        return value
    return writable_file(ctx, param, value)
