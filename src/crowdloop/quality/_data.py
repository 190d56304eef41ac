"""Checking and integer-encoding the long answers frame, once per fit.

Every aggregator works on integer codes: tasks, workers and labels are factorised
once here, so the algorithms are bincounts and sparse products over int arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from crowdloop.errors import (
    EmptyInputError,
    InvalidInputError,
    MissingColumnsError,
    MissingValuesError,
    UnknownLabelError,
)
from crowdloop.numbers import is_number, plain

ANSWER_COLUMNS = ("task", "worker", "label")


def check_answers(answers: Any, *, numeric: bool = False) -> pd.DataFrame:
    """Return the ``task, worker, label`` columns of ``answers`` or raise a typed error."""
    if not isinstance(answers, pd.DataFrame):
        raise InvalidInputError(
            f"answers must be a pandas DataFrame with columns task, worker, label; got {type(answers).__name__}."
        )
    missing = [c for c in ANSWER_COLUMNS if c not in answers.columns]
    if missing:
        raise MissingColumnsError(
            f"answers lack column(s) {', '.join(missing)}; "
            f"found {', '.join(map(str, answers.columns)) or 'no columns'}."
        )
    if answers.empty:
        raise EmptyInputError("answers are empty: there is nothing to aggregate.")
    frame = answers.loc[:, list(ANSWER_COLUMNS)]
    _check_no_missing(frame)
    if numeric:
        frame["label"] = _numeric_labels(frame["label"])
    return frame


def _check_no_missing(frame: pd.DataFrame) -> None:
    """An error naming the first answer with no task, worker or label by the other two: its row
    number was the frame's index, 0 for a file's first line of answers (line 2)."""
    for column in ANSWER_COLUMNS:
        missing = frame[column].isna().to_numpy()
        if missing.any():
            row = frame.iloc[int(np.argmax(missing))]
            named = [f"{other} {_shown(row[other])}" for other in ANSWER_COLUMNS if other != column
                     and not pd.isna(row[other])]  # fmt: skip
            first = f"first: {', '.join(named)}" if named else "first: a row with none of task, worker, label"
            raise MissingValuesError(f"{int(missing.sum())} answer(s) have no {column} ({first}).")


def _shown(value: Any) -> str:
    """``value`` as a message shows it: ``2``, not numpy's ``np.int64(2)``."""
    return repr(plain(value))


def _numeric_labels(labels: pd.Series) -> pd.Series:
    """The labels as numbers, or an error naming some that are not.

    A file reader keeps a column as text unless every value is written the way its number
    prints (so an id ``007`` stays an id); a score column with ``00`` or ``-0`` in it so came as
    text, and it is still scores, so text that is a number counts as that number here.
    """
    if pd.api.types.is_bool_dtype(labels):
        raise InvalidInputError("numeric aggregation needs numeric labels; column label holds True/False.")
    if not pd.api.types.is_numeric_dtype(labels):
        labels = _parsed_numbers(labels)
    if not np.isfinite(labels.to_numpy(dtype=float)).all():
        raise InvalidInputError("numeric labels must be finite numbers (found inf).")
    return labels


def _parsed_numbers(labels: pd.Series) -> pd.Series:
    """Text labels as numbers (``"007"`` -> 7); the error shows a few that are not, and how many."""
    text = labels.astype(str).str.strip()
    wrong = ~text.map(is_number).to_numpy(dtype=bool)
    if wrong.any():
        shown = ", ".join(repr(value) for value in labels[wrong].unique()[:3])
        raise InvalidInputError(
            f"numeric aggregation needs numeric labels; {int(wrong.sum())} answer(s) have a label "
            f"that is not a number, such as {shown}."
        )
    return pd.to_numeric(text)


def _factorize(values: pd.Series, *, sort: bool) -> tuple[np.ndarray, pd.Index]:
    """Integer codes and their uniques. Values of mixed types (``1`` and ``"1"``, as a file read
    in two parts may give) are compared as text, so they make one code, not two that split a vote."""
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=False).startswith("mixed"):
        values = values.astype(str)
    try:
        codes, uniques = pd.factorize(values, sort=sort)
    except TypeError:
        codes, uniques = pd.factorize(values.astype(str), sort=sort)
    return codes.astype(np.int64, copy=False), pd.Index(uniques)


@dataclass(frozen=True, eq=False)
class EncodedAnswers:
    """Answers as parallel int arrays plus the names behind each code."""

    task: np.ndarray
    worker: np.ndarray
    label: np.ndarray
    tasks: pd.Index
    workers: pd.Index
    classes: pd.Index

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    @property
    def n_workers(self) -> int:
        return len(self.workers)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_answers(self) -> int:
        return len(self.task)

    @cached_property
    def task_label_counts(self) -> np.ndarray:
        """``(n_tasks, n_classes)`` count of each label on each task."""
        flat = self.task * self.n_classes + self.label
        counts = np.bincount(flat, minlength=self.n_tasks * self.n_classes)
        return counts.reshape(self.n_tasks, self.n_classes).astype(float)

    @cached_property
    def worker_answer_counts(self) -> np.ndarray:
        """Number of answers each worker gave (repeats included)."""
        return np.bincount(self.worker, minlength=self.n_workers).astype(float)

    @cached_property
    def task_workerlabel(self) -> sparse.csr_matrix:
        """Sparse ``(n_tasks, n_workers * n_classes)`` counts: column ``w * K + l``.

        ``C @ log_pi`` is the Dawid-Skene E-step and ``C.T @ posteriors`` its
        M-step, each one sparse product over all answers.
        """
        columns = self.worker * self.n_classes + self.label
        shape = (self.n_tasks, self.n_workers * self.n_classes)
        ones = np.ones(self.n_answers)
        matrix = sparse.csr_matrix((ones, (self.task, columns)), shape=shape)
        matrix.sum_duplicates()
        return matrix

    @cached_property
    def workerlabel_task(self) -> sparse.csr_matrix:
        """The transpose of :attr:`task_workerlabel`, kept in CSR for fast products."""
        return self.task_workerlabel.T.tocsr()


def encoded_from_csr(indptr: np.ndarray, columns: np.ndarray, n_workers: int, n_classes: int) -> EncodedAnswers:
    """Codes-only answers of tasks ``0..n-1`` given as CSR rows of ``worker * K + label``.

    The scale-out engines keep each partition in this compact form (tasks
    contiguous, 4 bytes an answer) and rebuild the arrays per pass; the sparse
    task x (worker, label) matrix is the CSR itself, so no sort is needed.
    """
    n_tasks = len(indptr) - 1
    task = np.repeat(np.arange(n_tasks, dtype=np.int32), np.diff(indptr))
    data = EncodedAnswers(
        task,
        columns // n_classes,
        columns % n_classes,
        pd.RangeIndex(n_tasks),
        pd.RangeIndex(n_workers),
        pd.RangeIndex(n_classes),
    )
    shape = (n_tasks, n_workers * n_classes)
    matrix = sparse.csr_matrix((np.ones(len(columns)), columns, indptr), shape=shape)
    data.__dict__["task_workerlabel"] = matrix  # pre-fill the cached properties
    data.__dict__["workerlabel_task"] = matrix.T  # CSC view: same products, no copy
    return data


def encode_answers(answers: Any) -> EncodedAnswers:
    """Check and integer-encode categorical answers (classes sorted, tasks in order seen)."""
    frame = check_answers(answers)
    task, tasks = _factorize(frame["task"], sort=False)
    worker, workers = _factorize(frame["worker"], sort=False)
    label, classes = _factorize(frame["label"], sort=True)
    return EncodedAnswers(task, worker, label, tasks, workers, classes)


@dataclass(frozen=True)
class EncodedGold:
    """Known true labels as task codes and class codes (tasks absent from answers dropped)."""

    task: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return len(self.task)


def gold_series(gold: Any) -> pd.Series:
    """Accept gold as a Series (task -> label) or a frame with ``task, label`` columns."""
    if isinstance(gold, pd.DataFrame):
        missing = [c for c in ("task", "label") if c not in gold.columns]
        if missing:
            raise MissingColumnsError(f"gold lacks column(s) {', '.join(missing)}.")
        gold = gold.set_index("task")["label"]
    if not isinstance(gold, pd.Series):
        raise InvalidInputError(f"gold must be a Series (task -> label) or a DataFrame; got {type(gold).__name__}.")
    if gold.isna().any():
        raise MissingValuesError(f"{int(gold.isna().sum())} gold task(s) have no label.")
    if gold.index.has_duplicates:
        dup = gold.index[gold.index.duplicated()][0]
        raise InvalidInputError(f"gold gives task {dup!r} more than one label.")
    return gold


MAX_LABELS_SHOWN = 20
"""Labels of the label set an unknown gold label's error lists (a numeric set has a hundred)."""


def encode_gold(gold: Any, data: EncodedAnswers) -> EncodedGold:
    """Map gold labels onto ``data``'s codes; labels outside the label set are an error."""
    if gold is None:
        return EncodedGold(np.empty(0, np.int64), np.empty(0, np.int64))
    series = gold_series(gold)
    task = data.tasks.get_indexer(series.index)
    known = task >= 0
    if len(series) and not known.any():  # every gold label was dropped without a word
        raise EmptyInputError(
            f"none of the {len(series)} gold tasks is among the answers' {data.n_tasks} tasks (gold task "
            f"{_shown(series.index[0])}, answered task {_shown(data.tasks[0])}; ids of two kinds, such as "
            "'12' and 12, are two ids)."
        )
    series, task = series[known], task[known]
    label = _class_codes(series, data.classes)
    return EncodedGold(task.astype(np.int64), label)


def _class_codes(labels: pd.Series, classes: pd.Index) -> np.ndarray:
    codes = classes.get_indexer(pd.Index(labels.to_numpy()))
    if (codes < 0).any():  # e.g. gold read from a file as text, answers as ints: match as text
        as_text = pd.Index(classes.astype(str))
        if as_text.is_unique:
            codes = as_text.get_indexer(pd.Index(labels.astype(str).to_numpy()))
    unknown = codes < 0
    if unknown.any():
        bad = sorted({_shown(v) for v in labels[unknown].unique()})[:5]
        known = [_shown(v) for v in classes[:MAX_LABELS_SHOWN]]
        more = f", ... ({len(classes)} in all)" if len(classes) > MAX_LABELS_SHOWN else ""
        scores = all(is_number(str(v)) for v in classes) and len(classes) > MAX_LABELS_SHOWN
        hint = "; if the labels are scores, a numeric method (mean, median) reads them as numbers" if scores else ""
        raise UnknownLabelError(
            f"gold label(s) {', '.join(bad)} are not in the label set {{{', '.join(known)}{more}}} seen in the "
            f"answers{hint}."
        )
    return codes.astype(np.int64)
