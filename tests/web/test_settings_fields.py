"""The settings form's field list (``web/static/js/settings.js``) against the API's schemas: a rule or
method added on the server and forgotten in the form, or renamed in one place, fails here."""

from __future__ import annotations

import re
from pathlib import Path

from crowdloop.crowd.schemas import ProjectUpdate, QualityRules
from crowdloop.quality import CATEGORICAL_METHODS

SETTINGS_JS = Path(__file__).resolve().parents[2] / "src" / "crowdloop" / "web" / "static" / "js" / "settings.js"


def _block(name: str) -> str:
    match = re.search(rf"const {name} = \[(.*?)\n\];", SETTINGS_JS.read_text(), re.S)
    assert match, f"settings.js has no {name} list"
    return match.group(1)


def test_the_method_select_offers_every_categorical_aggregator():
    assert re.findall(r'"([a-z_]+)"', _block("METHODS")) == list(CATEGORICAL_METHODS)


def test_every_quality_rule_has_a_field_and_every_field_is_a_setting():
    rules = [*re.findall(r'name: "([a-z_]+)"', _block("RULES")), "training_feedback"]  # the checkbox
    assert sorted(rules) == sorted(QualityRules.model_fields)
    settings = re.findall(r'name: "([a-z_]+)"', _block("SETTINGS"))
    assert set(settings) <= set(ProjectUpdate.model_fields) and "confidence_target" in settings
