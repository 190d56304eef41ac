"""Simulated populations and the replay of a recorded crowd."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crowdloop.errors import ConflictError, InvalidParameterError
from crowdloop.sim import ReplayedCrowd, SimulatedCrowd, make_population


def _answers_of(crowd: SimulatedCrowd, worker: str, tasks) -> list:
    return [crowd.answer(worker, t).label for t in tasks]


def test_each_kind_answers_as_its_kind():
    truth = pd.Series(np.tile([0, 1, 2], 200), index=range(600))
    labels = [0, 1, 2]
    profiles = {kind: make_population(1, labels, {kind: 1.0}, random_state=3, prefix=kind)[0] for kind in
                ("reliable", "noisy", "spammer", "adversarial", "class_biased")}  # fmt: skip
    crowd = SimulatedCrowd(truth, list(profiles.values()), random_state=0)
    accuracy = {}
    for kind, profile in profiles.items():
        given = np.array(_answers_of(crowd, profile.name, truth.index))
        accuracy[kind] = (given == truth.to_numpy()).mean()
        if kind == "spammer":
            assert len(set(given)) == 1  # one habitual label whatever the item
        if kind == "class_biased":
            favourite = np.bincount(given[given != truth.to_numpy()]).argmax()
            assert (given == favourite).mean() > 0.4
    assert accuracy["reliable"] > 0.8 and accuracy["adversarial"] < 0.15
    assert 1 / 3 < accuracy["noisy"] < 0.8
    seconds = {kind: np.median([crowd.answer(p.name, 0).seconds for _ in range(200)]) for kind, p in profiles.items()}
    assert seconds["spammer"] < seconds["reliable"] and all(s > 0 for s in seconds.values())


def test_population_follows_the_mix_and_is_reproducible():
    first = make_population(400, ["a", "b"], {"reliable": 0.75, "spammer": 0.25}, random_state=7)
    again = make_population(400, ["a", "b"], {"reliable": 0.75, "spammer": 0.25}, random_state=7)
    kinds = pd.Series([p.kind for p in first]).value_counts(normalize=True)
    assert abs(kinds["spammer"] - 0.25) < 0.06 and set(kinds.index) == {"reliable", "spammer"}
    assert all(np.array_equal(a.confusion, b.confusion) for a, b in zip(first, again, strict=True))
    for profile in first:
        assert np.allclose(profile.confusion.sum(axis=1), 1.0)


@pytest.mark.parametrize("mix", [{"wizard": 1.0}, {"reliable": -1.0}, {}])
def test_bad_mix_is_refused(mix):
    with pytest.raises(InvalidParameterError):
        make_population(5, [0, 1], mix)


def test_replay_gives_the_recorded_answer_and_nothing_else():
    recorded = pd.DataFrame({"task": [1, 1, 2, 3], "worker": ["a", "b", "a", "b"], "label": ["x", "y", "y", "x"],
                             "seconds": [3.0, 4.0, None, 5.0]})  # fmt: skip
    crowd = ReplayedCrowd(recorded)
    assert crowd.answer("a", 1).label == "x" and crowd.answer("b", 1).label == "y"
    assert crowd.answer("b", 3).seconds == 5.0 and crowd.answer("a", 2).seconds is None
    assert set(crowd.tasks_of("a")) == {1, 2} and crowd.labels == ["x", "y"]
    assert list(crowd.arrival_weights()) == [2.0, 2.0]
    with pytest.raises(ConflictError, match="never answered"):
        crowd.answer("a", 3)


def test_replay_of_answers_concatenated_from_two_files_keeps_each_answers_seconds():
    """pd.concat repeats index labels: each answer picked the seconds of every row with its label,
    and the replay failed with an obscure zip() error."""
    first = pd.DataFrame({"task": [1, 2], "worker": ["x", "x"], "label": ["a", "b"], "seconds": [3.0, 4.0]})
    second = pd.DataFrame({"task": [1, 2], "worker": ["y", "y"], "label": ["a", "a"], "seconds": [5.0, 6.0]})
    crowd = ReplayedCrowd(pd.concat([first, second]))
    assert [crowd.answer(worker, 2).seconds for worker in ("x", "y")] == [4.0, 6.0]
    assert crowd.answer("y", 1).label == "a"
