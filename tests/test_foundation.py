"""The skeleton: error tree, settings, public API, docstring examples."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import re

import pytest

import crowdloop
from crowdloop import errors, quality
from crowdloop.config import Settings


def _error_classes() -> list[type[errors.CrowdloopError]]:
    return [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.CrowdloopError)]


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_error_has_a_status_an_exit_code_and_a_body(cls):
    error = cls("something is off")
    assert 400 <= error.status_code < 600
    assert error.exit_code >= 1
    assert error.to_dict() == {"error": cls.__name__, "detail": "something is off"}
    assert cls.__name__ in errors.__doc__, "the tree drawn in errors.py must list every class"


def test_validation_errors_are_client_errors():
    assert errors.MissingColumnsError.status_code == 422 and errors.MissingColumnsError.exit_code == 2
    assert errors.NotFoundError.status_code == 404
    assert issubclass(errors.NotFittedError, AttributeError)


def test_settings_read_the_prefixed_environment(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("CROWDLOOP_DATABASE_URL", "postgresql://localhost/test")
    monkeypatch.setenv("CROWDLOOP_ADMIN_TOKEN", "s3cret")
    monkeypatch.setenv("DATABASE_URL", "ignored")
    settings = Settings()
    assert settings.database_url == "postgresql://localhost/test"
    assert settings.admin_token is not None and settings.admin_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    assert Settings(database_url="sqlite:///x.db").database_url == "sqlite:///x.db"


def test_public_api_is_pinned_and_sorted():
    assert crowdloop.__all__ == sorted(crowdloop.__all__)
    assert crowdloop.__all__ == ["CrowdloopError", "Dataset", "Settings", "__version__", "load_dataset"]
    assert quality.__all__ == sorted(quality.__all__)
    for name in quality.__all__:
        assert hasattr(quality, name)
    assert set(quality.METHODS) == set(quality.CATEGORICAL_METHODS) | set(quality.NUMERIC_METHODS)


def _modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages(crowdloop.__path__, "crowdloop.") if not m.name.endswith("__main__")]


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


@pytest.mark.parametrize(
    "cls", sorted(set(quality.METHODS.values()), key=lambda c: c.__name__), ids=lambda c: c.__name__
)
def test_every_aggregator_documents_model_paper_and_example(cls):
    doc = inspect.getdoc(cls) or ""
    assert "Example:" in doc and ">>>" in doc
    if cls not in (quality.Mean, quality.Median, quality.MajorityVote):
        assert "Reference" in doc or "Why it is the default" in doc


def test_log_records_have_a_time_and_follow_the_configured_level():
    """CROWDLOOP_LOG_LEVEL was read and never applied: records went through Python's last resort
    (warnings only, no time)."""
    import subprocess
    import sys

    script = ("import logging; from crowdloop.config import configure_logging\n"
              "configure_logging('DEBUG'); configure_logging('DEBUG')\n"
              "logging.getLogger('crowdloop.x').debug('hello'); configure_logging('ERROR')\n"
              "logging.getLogger('crowdloop.x').warning('hidden')")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and re.fullmatch(r"\d{4}-\d\d-\d\d [\d:,]+ DEBUG crowdloop\.x: hello", lines[0]), lines
