"""Reading and writing answer and label tables: CSV, TSV, JSON Lines, Parquet.

Every read failure becomes a :class:`DataFileError` that names the file and
what is wrong with it, so front-ends can show one clear line.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd

from crowdloop.errors import DataFileError, InvalidInputError, MissingColumnsError

READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    # index_col=False: a row with one field more than the header is an error, not a silent shift
    # of every column by one (pandas would take the first column as the index)
    ".csv": lambda path: pd.read_csv(path, index_col=False),
    ".tsv": lambda path: pd.read_csv(path, sep="\t", index_col=False),
    ".jsonl": lambda path: pd.read_json(path, lines=True),
    ".ndjson": lambda path: pd.read_json(path, lines=True),
    ".parquet": lambda path: pd.read_parquet(path),
}
"""File suffix -> reader; the suffix decides the format."""


def table_format(path: Path | str) -> str:
    """The format suffix of ``path`` (``.csv``...), or a :class:`DataFileError`."""
    suffix = Path(path).suffix.lower()
    if suffix not in READERS:
        raise DataFileError(f"{path}: unknown format {suffix or '(no suffix)'}; use one of {', '.join(READERS)}.")
    return suffix


def read_table(path: Path | str, rename: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Read a table by its suffix; ``rename`` maps the file's column names to ours."""
    path = Path(path)
    reader = READERS[table_format(path)]
    if not path.is_file():
        raise DataFileError(f"{path}: no such file.")
    try:
        with warnings.catch_warnings():  # pandas only warns when a row has more fields than the header
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = reader(path)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserWarning) as error:
        raise DataFileError(f"{path}: cannot be read as {path.suffix[1:]}: {_first_line(error)}") from None
    return _renamed(frame, rename or {}, path)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _renamed(frame: pd.DataFrame, rename: Mapping[str, str], path: Path) -> pd.DataFrame:
    wanted = {source: target for source, target in rename.items() if source != target}
    missing = [source for source in wanted if source not in frame.columns]
    if missing:
        raise MissingColumnsError(
            f"{path}: no column(s) {', '.join(missing)}; found {', '.join(map(str, frame.columns))}."
        )
    renamed = frame.rename(columns=wanted)
    twice = sorted({str(c) for c in renamed.columns[renamed.columns.duplicated()]})
    if twice:
        raise InvalidInputError(
            f"{path}: column(s) {', '.join(twice)} twice after renaming; the file already has a column of that name."
        )
    return renamed


def write_table(frame: pd.DataFrame, path: Path | str) -> None:
    """Write ``frame`` in the format its suffix names (``-`` means CSV on stdout)."""
    if str(path) == "-":
        print(frame.to_csv(index=False), end="")
        return
    path = Path(path)
    suffix = table_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif suffix in (".jsonl", ".ndjson"):
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")


def read_gold(path: Path | str) -> pd.Series:
    """True labels from a ``task,label`` table (any format :func:`read_table` reads), by task."""
    frame = read_table(path)
    missing = {"task", "label"} - set(frame.columns)
    if missing:
        raise MissingColumnsError(f"{path}: gold lacks column(s) {', '.join(sorted(missing))}.")
    repeated = frame["task"][frame["task"].duplicated()].unique()
    if len(repeated):
        shown = ", ".join(map(str, repeated[:5]))
        raise InvalidInputError(f"{path}: {len(repeated)} task(s) have more than one gold label ({shown}); one each.")
    return frame.set_index("task")["label"]
