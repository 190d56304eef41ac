"""When a new version beats production (crowdloop.learning.promotion.beats): no lower on accuracy nor
on macro-F1 on the same gold, and higher on one."""

from __future__ import annotations

import pytest

from crowdloop.learning.promotion import beats


def score(accuracy: float, macro_f1: float) -> dict[str, float]:
    return {"accuracy": accuracy, "macro_f1": macro_f1}


@pytest.mark.parametrize(
    ("mine", "theirs", "promoted"),
    [
        # a walkthrough's naive Bayes on product (gold 85% "0"): one gold item more accurate, macro-F1
        # 0.58 -> 0.46, below the always-"0" model's accuracy: it was promoted on accuracy alone
        (score(0.8467, 0.4585), score(0.8400, 0.5802), False),
        (score(0.90, 0.80), score(0.88, 0.75), True),
        (score(0.88, 0.76), score(0.88, 0.75), True),  # a tie on accuracy, better macro-F1
        (score(0.89, 0.75), score(0.88, 0.75), True),
        (score(0.88, 0.75), score(0.88, 0.75), False),  # a tie is no reason to change
        (score(0.87, 0.80), score(0.88, 0.75), False),
        (score(0.89, 0.4), score(0.88, 0.4000000000000001), True),  # the same macro-F1, from other counts
    ],
)
def test_a_candidate_must_not_lose_on_either_measure(mine, theirs, promoted):
    assert beats(mine, theirs) is promoted
