"""Reading and writing answer and label tables: CSV, TSV, JSON Lines, Parquet.

Every read failure becomes a :class:`DataFileError` that names the file and
what is wrong with it, so front-ends can show one clear line.
"""

from __future__ import annotations

import re
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from crowdloop.errors import DataFileError, InvalidInputError, MissingColumnsError, MissingValuesError
from crowdloop.numbers import is_plain_number


def read_delimited(path: Path, sep: str = ",") -> pd.DataFrame:
    """A CSV or TSV table whose values are kept as written unless they are plainly numbers.

    pandas guesses each column's type: it read an id ``007`` as 7 (so ``007`` and ``7`` became
    one task, and the output no longer matched the user's ids) and a label ``NA`` or ``null`` as
    missing. Here every field is read as text, an empty field is missing, and a column becomes
    numbers only when each of its values is a number written the way that number prints.
    ``index_col=False``: a row with one field more than the header is an error, not a silent
    shift of every column by one (pandas would take the first column as the index).
    """
    frame = pd.read_csv(path, sep=sep, index_col=False, dtype=str, keep_default_na=False, na_values=[""])
    return frame.apply(numbers_if_plain)


def numbers_if_plain(column: pd.Series) -> pd.Series:
    """``column`` (text, None for missing) as numbers when every value is a plain number, else as it is."""
    values = column.dropna()
    if values.empty or not values.map(is_plain_number).all():
        return column
    return pd.to_numeric(column)


def read_json_lines(path: Path) -> pd.DataFrame:
    """A JSON Lines table whose values keep their JSON types: strings stay strings, numbers numbers.

    pandas guesses each column's type by default: it read the id ``"007"`` as 7 and the label
    ``"1e5"`` as 100000, so two tasks (or two labels) silently became one. JSON says which is
    text, so nothing is guessed here, nor are strings in date-like columns turned into dates.
    """
    return pd.read_json(path, lines=True, dtype=False, convert_dates=False)


READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    ".csv": read_delimited,
    ".tsv": lambda path: read_delimited(path, sep="\t"),
    ".jsonl": read_json_lines,
    ".ndjson": read_json_lines,
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
        raise DataFileError(f"{path}: cannot be read as {path.suffix[1:]}: {csv_problem(_first_line(error))}") from None
    return _renamed(frame, rename or {}, path)


_UNCLOSED_QUOTE = re.compile(r"EOF inside string starting at row (\d+)")


def csv_problem(parser_said: str) -> str:
    """The CSV parser's message in the file's terms: pandas says "Error tokenizing data. C error:
    EOF inside string starting at row 1" for a quote never closed, counting rows from 0."""
    unclosed = _UNCLOSED_QUOTE.search(parser_said)
    if unclosed is None:
        return parser_said
    line = int(unclosed.group(1)) + 1
    return (f'a quoted field opened on line {line} is never closed (an unmatched "): close it, or write a '
            'quote inside a field as two ("")')  # fmt: skip


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _renamed(frame: pd.DataFrame, rename: Mapping[str, str], path: Path) -> pd.DataFrame:
    return frame.set_axis(renamed_columns(list(frame.columns), rename, path), axis=1)


def renamed_columns(columns: list[Any], rename: Mapping[str, str], path: Path | str) -> list[Any]:
    """``columns`` after ``rename`` (the file's name -> ours), or an error naming the file.

    One rule for every engine: a renamed column must exist, and a new name must not be one the
    file already has (``--task-col item`` on a file that also has ``task``): which of the two
    is meant is not ours to guess.
    """
    wanted = {source: target for source, target in rename.items() if source != target}
    missing = [source for source in wanted if source not in columns]
    if missing:
        raise MissingColumnsError(f"{path}: no column(s) {', '.join(missing)}; found {', '.join(map(str, columns))}.")
    renamed = pd.Index([wanted.get(column, column) for column in columns])
    twice = sorted({str(c) for c in renamed[renamed.duplicated()]})
    if twice:
        raise InvalidInputError(
            f"{path}: column(s) {', '.join(twice)} twice after renaming; the file already has a column of that name."
        )
    return list(renamed)


def write_table(frame: pd.DataFrame, path: Path | str) -> None:
    """Write ``frame`` in the format its suffix names (``-`` means CSV on stdout)."""
    if str(path) == "-":
        print(frame.to_csv(index=False), end="")
        return
    path = Path(path)
    suffix = table_format(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".parquet":
            _to_parquet(frame, path)
        elif suffix in (".jsonl", ".ndjson"):
            frame.to_json(path, orient="records", lines=True)
        else:
            frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    except OSError as error:  # a directory in the way, no permission: one line, not a traceback
        raise DataFileError(f"{path}: cannot be written: {error.strerror or _first_line(error)}.") from None


def _to_parquet(frame: pd.DataFrame, path: Path) -> None:
    """``frame`` as Parquet; when pyarrow finds no one type for a column that mixes kinds of values
    (worker ids ``"a"`` and ``2`` from JSON Lines), with those columns as text. Its refusal was a
    traceback after the labels had been written. Mixes it can type (1 and 2.5) stay as they are."""
    import pyarrow as pa

    try:
        frame.to_parquet(path, index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        _one_type_per_column(frame).to_parquet(path, index=False)


def _one_type_per_column(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every column that mixes text and other values as text."""
    mixed = [column for column in frame.columns if frame[column].dtype == object
             and pd.api.types.infer_dtype(frame[column], skipna=True) in ("mixed", "mixed-integer")]  # fmt: skip
    as_text = {column: frame[column].map(lambda value: None if pd.isna(value) else str(value)) for column in mixed}
    return frame.assign(**as_text) if mixed else frame


def check_output(path: Path | str, inputs: Iterable[Path | str] = ()) -> None:
    """Refuse an output path that could not be written, before any work is done.

    Checked only when writing, a wrong suffix was an error after the whole fit (and after an
    earlier output was already written), a directory in the way a traceback, and an output
    that is one of the ``inputs`` silently replaced it.
    """
    if str(path) == "-":
        return
    table_format(path)
    check_writable(path)
    check_not_an_input(path, inputs)


def check_writable(path: Path | str) -> None:
    """Refuse a file path that cannot be written: a directory there, a file where a folder of it
    should be, or a folder that takes no new file (tried with a file made and removed at once:
    ``os.access`` says yes to root everywhere, ``/proc`` included). It was found only when the
    output was written, after the whole fit and after an earlier output."""
    path = Path(path)
    if path.is_dir():
        raise DataFileError(f"{path}: is a directory; give a file name.")
    blocker = next((parent for parent in path.parents if parent.exists()), Path("."))
    if not blocker.is_dir():
        raise DataFileError(f"{path}: {blocker} is a file, not a directory.")
    try:
        if path.is_file():
            with path.open("ab"):
                pass
        elif not path.exists():
            with tempfile.TemporaryFile(dir=blocker):
                pass
    except OSError as error:
        raise DataFileError(f"{path}: cannot be written: {error.strerror or _first_line(error)}.") from None


def check_not_an_input(path: Path | str, inputs: Iterable[Path | str]) -> None:
    """Refuse to write over an input: the output replaced the answers or gold it was made from."""
    path = Path(path)
    for source in map(Path, inputs):
        if path.exists() and source.exists() and path.samefile(source):  # symlinks and hard links too
            raise InvalidInputError(f"{path}: is an input file; writing the output there would replace it.")


def same_task_ids(
    answers: pd.DataFrame, gold: pd.Series | None, items: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.Series | None, pd.DataFrame | None]:
    """The answers' ``task`` column and the task index of gold and items as one kind of id.

    A file's column is numbers only when every id in it is a plain number, so the answers (with
    an id ``007``) can hold ``"7"`` where the gold file holds 7; then every id becomes text, as written.
    Answers without a ``task`` column (another header, a TSV named .csv, an empty file) are left
    as they are: the aggregator's column check then names what is missing and what was found,
    as ``crowdloop agreement`` does, where reading the column here was a bare ``KeyError``.
    """
    if "task" not in answers.columns:
        return answers, gold, items
    dtypes = [answers["task"].dtype] + [table.index.dtype for table in (gold, items) if table is not None]
    kinds = {pd.api.types.is_numeric_dtype(dtype) for dtype in dtypes}
    if len(kinds) < 2:
        return answers, gold, items
    gold = None if gold is None else gold.set_axis(gold.index.astype(str))
    items = None if items is None else items.set_axis(items.index.astype(str))
    return answers.assign(task=answers["task"].astype(str)), gold, items


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
    _check_labelled(frame, path)
    return frame.set_index("task")["label"]


def _check_labelled(frame: pd.DataFrame, path: Path | str) -> None:
    """Every gold row has a label. A blank one was read as NaN, which also turned the others into
    floats, and the error blamed labels "1.0", "2.0" and "nan" missing from the answers."""
    blank = frame["label"].isna() | (frame["label"].astype(str).str.strip() == "")
    if blank.any():
        shown = ", ".join(map(str, frame.loc[blank, "task"].head(5)))
        count = int(blank.sum())
        raise MissingValuesError(
            f"{path}: {count} gold row(s) have no label (task(s) {shown}); give each a label or leave it out."
        )
