"""The learning library, handed what a notebook user plausibly hands it: a clear crowdloop error that
names the problem, or the right result, never a raw pandas/numpy/scikit-learn error or a silently
wrong number. Each case below was one of those before."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from crowdloop.errors import EmptyInputError, InvalidInputError, InvalidParameterError, MissingColumnsError
from crowdloop.learning import (
    CrowdModel,
    FeatureSpec,
    TrainedModel,
    cross_val_probas,
    evaluate,
    evaluate_probas,
    select,
    train_model,
    tune,
)
from crowdloop.sim import ActiveLearning, ReplayedCrowd, run_in_process

SPEC = FeatureSpec(pair=(("text", "text_b"),))


@pytest.fixture(scope="module")
def small(rte):
    items = rte.items.iloc[:200].reset_index(drop=True)
    return items, rte.gold[rte.gold.index.isin(items["task"])]


def test_ids_must_be_there_and_unique(small):
    items, gold = small
    with pytest.raises(MissingColumnsError, match="items have no id column 'task'"):
        train_model(items.drop(columns="task"), gold, SPEC)
    with pytest.raises(InvalidInputError, match="names more than one item"):
        train_model(pd.concat([items, items.head(5)]), gold, SPEC)
    with pytest.raises(InvalidInputError, match="has more than one label row"):
        train_model(items, pd.concat([gold, 1 - gold.head(20)]), SPEC)


def test_soft_labels_must_be_probabilities_row_by_row(small):
    items, gold = small
    frame = pd.get_dummies(gold).astype(float)
    for bad in (np.nan, np.inf, -0.5):
        broken = frame.copy()
        broken.iloc[3, 0] = bad
        with pytest.raises(InvalidInputError, match=rf"task {int(broken.index[3])} \(int\) and 0 more"):
            train_model(items, broken, SPEC)
    zero = frame.copy()
    zero.iloc[7] = 0.0
    with pytest.raises(InvalidInputError, match="not all zero"):
        cross_val_probas(items, zero, SPEC)
    with pytest.raises(InvalidInputError, match="labels must be a Series .* got list"):
        train_model(items, list(gold), SPEC)


def test_labels_of_mixed_types_make_one_class_each(small):
    items, gold = small
    mixed = gold.astype(object)
    mixed.iloc[::2] = mixed.iloc[::2].astype(str)
    assert sorted(train_model(items, mixed, SPEC).classes_) == ["0", "1"]  # not [0, 1, "0", "1"]


def test_parameters_of_the_wrong_type_are_named(small):
    items, gold = small
    for params, message in (({"C": "abc"}, "'C' must be a number; got 'abc'"), ({"C": None}, "'C' must be a number"),
                            ({"C": True}, "'C' must be a number")):  # fmt: skip
        with pytest.raises(InvalidParameterError, match=message):
            train_model(items, gold, SPEC, params=params)
    with pytest.raises(InvalidParameterError, match="'max_depth' must be a whole number; got 2.7"):
        train_model(items, gold, SPEC, family="gboost", params={"max_depth": 2.7})
    model = train_model(items, gold, SPEC, family="gboost", params={"max_depth": 2.0, "n_estimators": 10})
    assert model.params["max_depth"] == 2 and isinstance(model.params["max_depth"], int)  # recorded as fitted
    assert model.params["learning_rate"] == 0.15  # and the defaults, as the server's registry records them


def test_cross_validation_needs_folds_it_can_make(small):
    items, gold = small
    for folds in (0, 1, 500):
        with pytest.raises(InvalidParameterError, match="n_folds must be between 2 and the 200 labeled items"):
            cross_val_probas(items, gold, SPEC, n_folds=folds)


def test_a_folder_that_is_not_a_whole_model_says_so(tmp_path, small):
    items, gold = small
    folder = train_model(items, gold, SPEC).save(tmp_path / "model")
    (folder / "estimator.pkl").unlink()
    with pytest.raises(InvalidInputError, match="is not a whole saved model: FileNotFoundError"):
        TrainedModel.load(folder)
    (folder / "model.json").write_text("not json")
    with pytest.raises(InvalidInputError, match="is not a whole saved model: JSONDecodeError"):
        TrainedModel.load(folder)


def test_evaluate_takes_what_holds_a_model_and_refuses_bad_input(small, rte):
    items, gold = small
    crowd = CrowdModel(n_iter=1, n_folds=2).fit(items, rte.answers)
    assert evaluate(crowd, items, gold)["n"] == 200  # its model_, as evaluate(crowd.model_, ...)
    with pytest.raises(InvalidInputError, match="evaluate needs a trained model; got CrowdModel"):
        evaluate(CrowdModel(), items, gold)
    probas = pd.DataFrame({"0": [0.5, np.nan], "1": [0.5, 0.2]}, index=[1, 2])
    with pytest.raises(InvalidInputError, match="missing or infinite"):
        evaluate_probas(probas, pd.Series({1: "0", 2: "1"}))
    with pytest.raises(InvalidParameterError, match="bins must be at least 1"):
        evaluate_probas(probas.fillna(0.8), pd.Series({1: "0", 2: "1"}), bins=0)


def test_crowd_model_says_when_no_answer_names_an_item(small, rte):
    items, _ = small
    answers = rte.answers.assign(task=rte.answers["task"].astype(str))  # ids read as text on one side
    with pytest.raises(InvalidInputError, match=r"answers name e.g. '\d+' \(str\), the items e.g. \d+ \(int\)"):
        CrowdModel().fit(items, answers, spec=SPEC)


def test_select_refuses_missing_probabilities_and_misaligned_features():
    probas = pd.DataFrame({"a": [0.9, np.nan, 0.4], "b": [0.1, 0.5, 0.6]}, index=[1, 2, 3])
    with pytest.raises(InvalidInputError, match="probabilities of 1 task"):
        select("entropy", probas)
    fine = probas.fillna(0.5)
    with pytest.raises(InvalidInputError, match="features have 2 rows for 3 tasks"):
        select("entropy", fine, features=np.eye(2))


def test_strings_where_tuples_belong_mean_one_name():
    assert FeatureSpec(text="title").text == ("title",)  # not five letters
    assert FeatureSpec(pair=("a", "b")).pair == (("a", "b"),)


def test_tune_takes_one_family_by_name(small):
    items, gold = small
    assert tune(items, gold, SPEC, n_trials=1, families="logreg").family == "logreg"  # not 'l', 'o', ...


def test_the_simulator_lines_items_up_by_task_as_load_dataset_gives_them(rte):
    """Items with a ``task`` column were matched to the crowd's tasks by row position (on ``product``
    every row came out empty), and items covering half the tasks were taken without a word."""
    crowd = ReplayedCrowd(rte.answers)
    by_column = ActiveLearning(retrain_every=200)
    run_in_process(crowd, by_column, items=rte.items, budget=200, random_state=0)
    by_index = ActiveLearning(retrain_every=200)
    run_in_process(crowd, by_index, items=rte.items.set_index("task"), budget=200, random_state=0)
    assert by_column.items is not None and by_index.items is not None
    assert by_column.items["text"].tolist() == by_index.items["text"].tolist()
    assert by_column.items.loc[crowd.tasks[0], "text"] == rte.items.set_index("task").loc[crowd.tasks[0], "text"]
    with pytest.raises(InvalidInputError, match="the items lack 400 of the answers' 800 tasks"):
        run_in_process(crowd, ActiveLearning(), items=rte.items.head(400), budget=10)


def test_simulation_scores_gold_as_a_frame_or_as_text(rte):
    result = run_in_process(ReplayedCrowd(rte.answers), ActiveLearning(retrain_every=200), items=rte.items, budget=900)
    as_series = result.summary(rte.gold)["label_accuracy"]
    assert as_series > 0.5
    assert result.summary(rte.gold.rename_axis("task").reset_index())["label_accuracy"] == as_series
    assert result.summary(rte.gold.astype(str))["label_accuracy"] == as_series  # "1" is 1
    json.dumps(result.summary(rte.gold))  # plain numbers


def test_ids_of_another_type_are_named_when_nothing_matches(small):
    items, gold = small
    with pytest.raises(EmptyInputError, match=r"labels name e.g. '\d+' \(str\), the items e.g. \d+ \(int\)"):
        train_model(items, gold.rename(index=str), SPEC)
    assert train_model(items, gold, SPEC).predict_proba(items.head(2)).index.name == "task"
