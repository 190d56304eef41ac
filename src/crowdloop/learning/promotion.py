"""When a new model version beats production on the same gold: the rule the service promotes by
(:func:`crowdloop.learning.service.decide_promotion`) and the CLI words its verdicts by. It
imports nothing, so the CLI compares scores as the server does without loading the learner."""

from __future__ import annotations

SCORE_DIGITS = 12
"""Digits scores are compared to: a macro-F1 of 0.4 may come out 0.4000000000000001 from other counts."""


def rounded(score: dict[str, float]) -> dict[str, float]:
    """``score`` (accuracy and macro-F1) as the rule compares it."""
    return {measure: round(value, SCORE_DIGITS) for measure, value in score.items()}


def beats(mine: dict[str, float], theirs: dict[str, float]) -> bool:
    """Whether a candidate scoring ``mine`` beats production's ``theirs`` on the same gold: no lower
    on accuracy nor on macro-F1, and higher on one. With accuracy first, a version one gold item
    more accurate whose macro-F1 fell from 0.58 to 0.46 was promoted: on gold that is 85% one
    class, a model sliding toward always answering it. The owner can still promote by hand."""
    new, old = rounded(mine), rounded(theirs)
    pairs = [(new[measure], old[measure]) for measure in ("accuracy", "macro_f1")]
    return all(a >= b for a, b in pairs) and any(a > b for a, b in pairs)
