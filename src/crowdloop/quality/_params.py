"""Declarative hyper-parameter checks, run at fit time (the scikit-learn way).

Each estimator lists ``_parameter_constraints``; :func:`validate_params` checks the
stored values and raises :class:`InvalidParameterError` naming the estimator, the
parameter, what is allowed and what was received.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from crowdloop.errors import InvalidParameterError


@dataclass(frozen=True)
class Interval:
    """A real or integer range; ``None`` for an open end."""

    kind: type
    low: float | None
    high: float | None
    closed: str = "both"  # "both", "left", "right" or "neither"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.kind is int and not isinstance(value, numbers.Integral):
            return False
        if np.isnan(float(value)):
            return False
        return self._above_low(float(value)) and self._below_high(float(value))

    def _above_low(self, value: float) -> bool:
        if self.low is None:
            return True
        return value >= self.low if self.closed in ("both", "left") else value > self.low

    def _below_high(self, value: float) -> bool:
        if self.high is None:
            return True
        return value <= self.high if self.closed in ("both", "right") else value < self.high

    def __str__(self) -> str:
        left = "[" if self.closed in ("both", "left") and self.low is not None else "("
        right = "]" if self.closed in ("both", "right") and self.high is not None else ")"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{'an int' if self.kind is int else 'a float'} in {left}{low}, {high}{right}"


@dataclass(frozen=True)
class Options:
    """One of a fixed set of values."""

    values: tuple[Any, ...]

    def accepts(self, value: Any) -> bool:
        return any(value == option and type(value) is type(option) for option in self.values)

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


class RandomState:
    """``None``, an int seed, or a :class:`numpy.random.Generator`."""

    def accepts(self, value: Any) -> bool:
        if value is None or isinstance(value, np.random.Generator):
            return True
        return isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 0

    def __str__(self) -> str:
        return "None, a non-negative int or a numpy Generator"


Constraint = Interval | Options | RandomState


def validate_params(owner: str, params: dict[str, Any], constraints: dict[str, Any]) -> None:
    """Raise :class:`InvalidParameterError` for the first parameter outside its constraint.

    A constraint may be a list of alternatives (any one accepting the value is enough).
    """
    for name, constraint in constraints.items():
        alternatives = constraint if isinstance(constraint, list) else [constraint]
        value = params[name]
        if not any(alt.accepts(value) for alt in alternatives):
            allowed = " or ".join(str(alt) for alt in alternatives)
            raise InvalidParameterError(f"{owner}: parameter {name!r} must be {allowed}; got {value!r}.")


def make_rng(random_state: int | np.random.Generator | None) -> np.random.Generator:
    """The estimator's own random generator; never numpy's global one."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(random_state)


def start_seed(random_state: int | np.random.Generator | None) -> int:
    """One 64-bit seed for :func:`keyed_uniforms`: an int seed's own draw, a generator's next draw."""
    return int(make_rng(random_state).integers(0, 2**63))


_GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)


def keyed_uniforms(keys: pd.Index, seed: int, stream: int, size: int) -> np.ndarray:
    """``size`` uniforms in [0, 1) for each of ``keys``, a function of the key itself (its text).

    Why not one generator's draws: those follow the order the keys come in, so a fit would
    depend on the row order of its input (MACE did, as Crowd-Kit's does: on ``product`` its
    labels moved with a shuffle of the rows). Here each key's draws come from a stable 64-bit
    hash of ``str(key)`` mixed with ``seed`` and ``stream`` through SplitMix64, so any engine
    that numbers the keys its own way (stream, Spark) draws the same values for the same key.
    """
    hashed = pd.util.hash_array(np.asarray(keys.map(str), dtype=object), categorize=False)
    base = hashed ^ np.uint64(seed % 2**64)
    steps = (np.uint64(stream) * np.uint64(size) + np.arange(1, size + 1, dtype=np.uint64)) * _GOLDEN_GAMMA
    mixed = base[:, None] + steps[None, :]  # (keys, size); mixed in place, one temporary at a time
    mixed ^= mixed >> np.uint64(30)
    mixed *= np.uint64(0xBF58476D1CE4E5B9)
    mixed ^= mixed >> np.uint64(27)
    mixed *= np.uint64(0x94D049BB133111EB)
    mixed ^= mixed >> np.uint64(31)
    mixed >>= np.uint64(11)
    uniforms = mixed.astype(np.float64)
    uniforms *= 2.0**-53
    return uniforms
