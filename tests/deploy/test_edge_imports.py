"""The edge runtime needs only numpy, onnxruntime, httpx and prometheus_client.

Run in a fresh interpreter: the ``crowdloop`` and ``crowdloop.learning`` packages import their
public names lazily, so importing the edge modules must not pull in the rest of the library.
"""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
import crowdloop.deploy.edge, crowdloop.deploy.edge_http
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""
HEAVY = {"pandas", "scipy", "sklearn", "skl2onnx", "onnx", "sqlalchemy", "fastapi", "pydantic", "alembic", "optuna"}


def test_edge_modules_import_no_heavy_dependency():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout))
    assert {"numpy", "httpx", "prometheus_client"} <= loaded  # onnxruntime: imported when a model loads
    assert loaded & HEAVY == set()
