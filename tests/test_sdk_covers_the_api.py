"""The SDK has a method for every route of the API (its docstring and the README say so)."""

from __future__ import annotations

import inspect
import re

from crowdloop import client
from crowdloop.api.routes import ROUTERS


def _routes() -> list[tuple[str, str]]:
    return sorted((method, route.path) for router in ROUTERS for route in router.routes
                  for method in route.methods - {"HEAD"})  # fmt: skip


def test_every_route_is_called_by_some_sdk_method():
    source = inspect.getsource(client)
    missing = []
    for method, path in _routes():
        # "/projects/{project_id}/models/{ref}" as an f-string writes it, whatever the variable names;
        # the last part may be a variable too ("/projects/{project_id}/export/{what}")
        parts = [r"\{[^}]+\}" if part.startswith("{") else re.escape(part) for part in path.split("/")]
        shapes = ["/".join(parts), "/".join([*parts[:-1], r"\{[^}]+\}"])]
        if not any(re.search(f"[\"']{shape}[\"']", source) for shape in shapes):
            missing.append(f"{method} {path}")
    assert not missing, f"routes no SDK method calls: {missing}"
    assert len(_routes()) > 40  # the walk found the API
