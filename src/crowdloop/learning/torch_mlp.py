"""``torch_mlp``: a one-hidden-layer network trained with PyTorch, the optional model family.

PyTorch is needed only to *train* it (``pip install 'crowdloop[torch]'``, which pins
``torch==2.13.0``); nothing else in crowdloop imports torch. A fitted :class:`TorchMLP` keeps
its weights as numpy arrays, so it predicts, pickles, loads and exports to ONNX (MatMul, Add,
Relu, MatMul, Add, Softmax) where torch is not installed: on the server after a restart
without it, and on the edge.

It takes the featurizer's sparse rows as they are (one sparse matrix product per batch, never
a dense copy of the TF-IDF matrix) and soft labels as per-row weights, like every family
(:func:`crowdloop.learning.train.fit_soft`): the loss is the weighted mean cross-entropy.
Training is seeded and runs on one thread, so a seed gives the same model.
"""

from __future__ import annotations

import importlib.util
from typing import Any, ClassVar

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin

from crowdloop.errors import InvalidParameterError
from crowdloop.quality._params import Interval, validate_params

INIT_SCALE = 0.05
"""Standard deviation of the first layer's initial weights (rows of TF-IDF values have unit norm)."""
MOMENTUM = 0.9


def torch_installed() -> bool:
    """Whether PyTorch can be imported here (without importing it)."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # a finder that refuses it, or a half-removed install
        return False


def require_torch() -> None:
    if not torch_installed():
        raise InvalidParameterError(
            "model family 'torch_mlp' needs PyTorch, which is not installed here: "
            "pip install 'crowdloop[torch]' (torch==2.13.0), or choose a scikit-learn family."
        )


class TorchMLP(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Features -> ``hidden`` ReLU units (dropout while training) -> softmax over the classes.

    SGD with momentum and ``weight_decay``, ``epochs`` passes over the rows in shuffled batches.
    Fitted attributes: ``classes_``, ``coefs_`` (two float32 weight matrices) and
    ``intercepts_`` (two float32 bias vectors), the names scikit-learn's MLP uses.
    """

    _constraints: ClassVar[dict[str, Interval]] = {  # not sklearn's _parameter_constraints: our own checks
        "hidden": Interval(int, 1, None),
        "epochs": Interval(int, 1, None),
        "learning_rate": Interval(float, 0, None, closed="neither"),
        "weight_decay": Interval(float, 0, None),
        "dropout": Interval(float, 0, 1, closed="left"),
        "batch_size": Interval(int, 1, None),
        "random_state": Interval(int, 0, None),
    }

    def __init__(
        self,
        hidden: int = 32,
        epochs: int = 20,
        learning_rate: float = 0.05,
        weight_decay: float = 1e-4,
        dropout: float = 0.0,
        batch_size: int = 128,
        random_state: int = 0,
    ) -> None:
        self.hidden = hidden
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.batch_size = batch_size
        self.random_state = random_state

    def validate_params(self) -> None:
        """Raise :class:`InvalidParameterError` naming the first parameter out of its range."""
        validate_params(type(self).__name__, self.get_params(), self._constraints)

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> TorchMLP:
        self.validate_params()
        require_torch()
        import torch

        rows = sparse.csr_matrix(X, dtype=np.float32)
        self.classes_, codes = np.unique(np.asarray(y), return_inverse=True)
        weights = np.ones(len(codes)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # sparse batches gain nothing from more, and a busy machine contends
        try:
            w1, b1, w2, b2 = self._train(torch, rows, codes, weights)
        finally:
            torch.set_num_threads(threads)
        self.coefs_, self.intercepts_ = [w1, w2], [b1, b2]
        return self

    def _train(self, torch: Any, rows: sparse.csr_matrix, codes: np.ndarray, weights: np.ndarray) -> list[np.ndarray]:
        """Fit and return the weights. The first layer is an ``EmbeddingBag`` that sums each row's
        feature vectors scaled by its TF-IDF values (a sparse product; its bias is kept apart).

        Plain SGD with momentum, not Adam: Adam scales each weight's step by its own gradient
        history, so the weight of a word seen in two items moves as fast as that of a feature
        every item has, and the network learns the training items by their rare words. Measured
        on ``product`` (4,000 gold-labeled pairs, 4,315 held out): Adam 0.88 held-out accuracy
        (0.99 on the training pairs), SGD 0.946, logistic regression 0.942. The defaults (step
        0.05, 20 epochs) are the steadiest across seeds measured on 2,000 crowd-labeled pairs:
        0.9235-0.9335 over six seeds, where a step of 0.1 for 10 epochs ranged 0.9095-0.934.
        """
        torch.manual_seed(self.random_state)
        first = torch.nn.EmbeddingBag(rows.shape[1], self.hidden, mode="sum")
        torch.nn.init.normal_(first.weight, std=INIT_SCALE)  # Embedding's N(0, 1) would swamp what is learned
        bias = torch.nn.Parameter(torch.zeros(self.hidden))
        second = torch.nn.Linear(self.hidden, len(self.classes_))
        dropout = torch.nn.Dropout(self.dropout)
        step = torch.optim.SGD([*first.parameters(), bias, *second.parameters()], lr=self.learning_rate,
                               momentum=MOMENTUM, weight_decay=self.weight_decay)  # fmt: skip
        targets, weight = torch.from_numpy(codes.astype(np.int64)), torch.from_numpy(weights.astype(np.float32))
        order = np.random.default_rng(self.random_state)
        n_batches = max(1, -(-rows.shape[0] // self.batch_size))
        for _ in range(self.epochs):
            for batch in np.array_split(order.permutation(rows.shape[0]), n_batches):
                part = rows[batch]
                hidden = first(
                    torch.from_numpy(part.indices.astype(np.int64)),
                    torch.from_numpy(part.indptr[:-1].astype(np.int64)),
                    per_sample_weights=torch.from_numpy(part.data),
                )
                logits = second(dropout(torch.relu(hidden + bias)))
                losses = torch.nn.functional.cross_entropy(logits, targets[batch], reduction="none")
                loss = (losses * weight[batch]).sum() / weight[batch].sum().clamp_min(1e-12)
                step.zero_grad()
                loss.backward()
                step.step()
        with torch.no_grad():
            return [first.weight.numpy().copy(), bias.numpy().copy(), second.weight.numpy().T.copy(),
                    second.bias.numpy().copy()]  # fmt: skip

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in ``classes_`` order (numpy only: no torch needed)."""
        rows = sparse.csr_matrix(X, dtype=np.float32)
        hidden = np.maximum(np.asarray(rows @ self.coefs_[0]) + self.intercepts_[0], np.float32(0))
        logits = hidden @ self.coefs_[1] + self.intercepts_[1]
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return np.asarray(shifted / shifted.sum(axis=1, keepdims=True), dtype=np.float64)

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.classes_[self.predict_proba(X).argmax(axis=1)])

    def onnx_graph(self, input_name: str, output_name: str, n_features: int) -> Any:
        """The network as an ONNX model taking dense float32 feature rows (the edge's input)."""
        from onnx import TensorProto, helper, numpy_helper

        weights = [
            numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)
            for name, array in (("w1", self.coefs_[0]), ("b1", self.intercepts_[0]),
                                ("w2", self.coefs_[1]), ("b2", self.intercepts_[1]))
        ]  # fmt: skip
        nodes = [
            helper.make_node("MatMul", [input_name, "w1"], ["h1"]),
            helper.make_node("Add", ["h1", "b1"], ["h2"]),
            helper.make_node("Relu", ["h2"], ["h3"]),
            helper.make_node("MatMul", ["h3", "w2"], ["h4"]),
            helper.make_node("Add", ["h4", "b2"], ["logits"]),
            helper.make_node("Softmax", ["logits"], [output_name], axis=1),
        ]
        graph = helper.make_graph(
            nodes,
            "torch_mlp",
            [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [None, n_features])],
            [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [None, len(self.classes_)])],
            initializer=weights,
        )
        # IR 8 with opset 13: what every onnxruntime the project allows (>= 1.18) reads, whatever the onnx release
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
