"""Export a trained model's estimator to ONNX, so the edge needs only numpy and onnxruntime.

Only the estimator goes into the graph: its input is the featurizer's dense feature row
(``float32``; ``float64`` for naive Bayes, whose sum of thousands of log-probabilities
drifts in single precision). Text never enters ONNX, because skl2onnx's tokeniser differs
from scikit-learn's; the edge computes the features with the very numpy featurizer the
model was trained with (``features.json``), so the two cannot drift apart.

:func:`export_onnx` writes two files next to the saved model:

* ``model.onnx`` — the estimator, output ``probabilities`` as a plain tensor (``zipmap=False``);
* ``edge.json`` — what the edge needs besides the featurizer state: input name and type,
  number of features, and the label of each probability column.

Example:
    >>> export_onnx(model, folder)  # doctest: +SKIP
    PosixPath('.../model.onnx')
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from crowdloop.deploy.files import EDGE_FILE, INPUT_NAME, ONNX_FILE, OUTPUT_NAME
from crowdloop.errors import InvalidInputError
from crowdloop.learning.features import Items
from crowdloop.learning.models import ONNX_INPUT_DTYPE, check_family
from crowdloop.learning.train import TrainedModel
from crowdloop.numbers import plain

TOLERANCE = 1e-5
"""Largest difference between onnxruntime's and scikit-learn's probabilities we accept."""
EDGE_FORMAT = 1


def input_dtype(model: TrainedModel) -> str:
    """The ONNX input type of ``model``'s family; an error names the families we export."""
    family = check_family(model.family)
    if family not in ONNX_INPUT_DTYPE:
        raise InvalidInputError(
            f"model family {family!r} has no exact ONNX conversion; export one of {ONNX_INPUT_DTYPE}."
        )
    return ONNX_INPUT_DTYPE[family]


def to_onnx_bytes(model: TrainedModel) -> bytes:
    """The estimator as a serialised ONNX graph taking dense feature rows (a family of our own,
    such as ``torch_mlp``, draws its graph itself; scikit-learn's go through skl2onnx)."""
    dtype = input_dtype(model)
    if hasattr(model.estimator, "onnx_graph"):
        graph = model.estimator.onnx_graph(INPUT_NAME, OUTPUT_NAME, model.featurizer.n_features_)
    else:
        graph = _skl2onnx_graph(model, dtype)
    _name_probabilities(graph)
    return bytes(graph.SerializeToString())


def _skl2onnx_graph(model: TrainedModel, dtype: str) -> Any:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    kind = FloatTensorType if dtype == "float32" else DoubleTensorType
    try:
        return to_onnx(
            model.estimator,
            initial_types=[(INPUT_NAME, kind([None, model.featurizer.n_features_]))],
            options={id(model.estimator): {"zipmap": False}},
        )
    except (RuntimeError, NotImplementedError, TypeError, ValueError) as error:
        raise InvalidInputError(f"skl2onnx cannot convert the {model.family} estimator: {error}") from error


def _name_probabilities(graph: Any) -> None:
    """skl2onnx names the outputs ``label`` and ``probabilities``; check we got a tensor."""
    names = [output.name for output in graph.graph.output]
    if OUTPUT_NAME not in names:
        raise InvalidInputError(f"the ONNX graph has outputs {names}, not {OUTPUT_NAME!r}.")


def edge_manifest(model: TrainedModel) -> dict[str, Any]:
    """The contents of ``edge.json``: how to feed the graph and read its output."""
    codes = [int(code) for code in np.asarray(model.estimator.classes_)]
    return {
        "format": EDGE_FORMAT,
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        "input_dtype": input_dtype(model),
        "n_features": model.featurizer.n_features_,
        "classes": [plain(model.classes_[code]) for code in codes],
        "all_classes": [plain(c) for c in model.classes_],
        "family": model.family,
    }


def export_onnx(model: TrainedModel, folder: Path) -> Path:
    """Write ``model.onnx`` and ``edge.json`` into ``folder``; return the ONNX file's path.

    ``folder`` normally holds the model saved by :meth:`TrainedModel.save` (the edge also
    reads its ``features.json``); it is created if missing.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    payload = to_onnx_bytes(model)
    (folder / EDGE_FILE).write_text(json.dumps(edge_manifest(model), indent=2))
    path = folder / ONNX_FILE
    path.write_bytes(payload)
    return path


def onnx_probabilities(folder: Path, rows: np.ndarray) -> np.ndarray:
    """onnxruntime's probabilities for dense feature ``rows``, columns as in ``edge.json``'s ``classes``."""
    import onnxruntime

    manifest = json.loads((Path(folder) / EDGE_FILE).read_text())
    session = onnxruntime.InferenceSession(str(Path(folder) / ONNX_FILE), providers=["CPUExecutionProvider"])
    feed = {manifest["input"]: rows.astype(manifest["input_dtype"])}
    return np.asarray(session.run([manifest["output"]], feed)[0], dtype=np.float64)


def verify_export(model: TrainedModel, folder: Path, items: Items) -> float:
    """Largest absolute difference between the exported graph's and scikit-learn's probabilities.

    Both sides see the same features: the featurizer's float32 rows (scikit-learn gets them
    sparse, as in training; ONNX dense, cast to the graph's input type).
    """
    expected = model.predict_proba(items)
    manifest = json.loads((Path(folder) / EDGE_FILE).read_text())
    got = onnx_probabilities(folder, model.featurizer.transform_dense(items))
    columns = [model.classes_.index(label) for label in manifest["classes"]]
    return float(np.max(np.abs(got - expected.to_numpy()[:, columns])))
