"""One model version on the edge: its featurizer state, its ONNX session and its classes.

Loaded from a registry artifact folder (``features.json``, ``edge.json``, ``model.onnx``,
``model.json``); needs numpy and onnxruntime only. Immutable once loaded, so a runtime
can swap one for another by replacing a reference while predictions run on the old one.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crowdloop.deploy.features import ItemFeatures
from crowdloop.deploy.files import EDGE_FILE, FEATURES_FILE, ONNX_FILE
from crowdloop.errors import InvalidInputError, NotFoundError
from crowdloop.learning.features import Featurizer


@dataclass(frozen=True)
class Prediction:
    """What a prediction returns: the label, every class's probability, the version, the confidence."""

    label: Any
    probabilities: dict[str, float]
    version: int
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "probabilities": self.probabilities,
            "version": self.version,
            "confidence": self.confidence,
        }


def _session(path: Path) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # one item at a time: threads cost more than they give
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class EdgeModel:
    """A loaded version: :meth:`predict` one item (a mapping of its fields) to a :class:`Prediction`."""

    def __init__(self, folder: Path, version: int, digest: str = "") -> None:
        folder = Path(folder)
        for name in (EDGE_FILE, ONNX_FILE, FEATURES_FILE):
            if not (folder / name).is_file():
                raise NotFoundError(f"model folder {folder} lacks {name}: was the version exported to ONNX?")
        self.folder, self.version, self.digest = folder, version, digest
        self.manifest: dict[str, Any] = json.loads((folder / EDGE_FILE).read_text())
        self.features = ItemFeatures(Featurizer.load(folder / FEATURES_FILE), self.manifest["input_dtype"])
        if self.features.n_features != int(self.manifest["n_features"]):
            raise InvalidInputError(f"{folder}: features.json and edge.json disagree on the number of features.")
        self.session = _session(folder / ONNX_FILE)
        self.classes: list[Any] = list(self.manifest["classes"])
        self._keys = [str(c) for c in self.classes]
        self._input, self._output = self.manifest["input"], [self.manifest["output"]]
        output = next(o for o in self.session.get_outputs() if o.name == self._output[0])
        self._output_dtype = np.float64 if output.type == "tensor(double)" else np.float32
        self._local = threading.local()

    @property
    def fields(self) -> list[str]:
        """The item fields the model reads."""
        return self.features.spec.fields

    def probabilities(self, item: dict[str, Any]) -> np.ndarray:
        """The probability of each class in :attr:`classes` order (a fresh array)."""
        row, cols = self.features.fill(item)
        try:
            binding, out = self._binding(row)
            self.session.run_with_iobinding(binding)
            return np.array(out[0], copy=True)
        finally:
            self.features.clear(cols)

    def _binding(self, row: np.ndarray) -> tuple[Any, np.ndarray]:
        """This thread's I/O binding: the graph reads its feature buffer and writes its output
        array in place, which saves a third of a plain ``session.run`` on one item."""
        bound = getattr(self._local, "bound", None)
        if bound is None or bound[0] is not row:
            out = np.empty((1, len(self.classes)), dtype=self._output_dtype)
            binding = self.session.io_binding()
            binding.bind_cpu_input(self._input, row)
            binding.bind_output(self._output[0], "cpu", 0, out.dtype, out.shape, out.ctypes.data)
            bound = self._local.bound = (row, binding, out)
        return bound[1], bound[2]

    def predict(self, item: dict[str, Any]) -> Prediction:
        probabilities = self.probabilities(item).tolist()
        best = max(range(len(probabilities)), key=probabilities.__getitem__)
        return Prediction(
            self.classes[best], dict(zip(self._keys, probabilities, strict=True)), self.version, probabilities[best]
        )

    def batch_probabilities(self, items: list[dict[str, Any]]) -> np.ndarray:
        """Probabilities of many items at once (one ONNX call)."""
        rows = np.vstack([self.features.row(item) for item in items])
        return np.asarray(self.session.run(self._output, {self._input: rows})[0])
