"""The edge runtime's own modules need only numpy, onnxruntime, httpx and prometheus_client.

Run in a fresh interpreter with the ``crowdloop`` and ``crowdloop.learning`` packages stubbed
(their ``__init__`` files import the whole library, pandas included); what the edge modules
pull in themselves must stay small.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import crowdloop

PROBE = """
import json, sys, types
from pathlib import Path
root = Path(sys.argv[1])
for name, path in [("crowdloop", root), ("crowdloop.learning", root / "learning")]:
    module = types.ModuleType(name)
    module.__path__ = [str(path)]
    sys.modules[name] = module
import crowdloop.deploy.edge, crowdloop.deploy.edge_http
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""
HEAVY = {"pandas", "scipy", "sklearn", "skl2onnx", "onnx", "sqlalchemy", "fastapi", "pydantic", "alembic", "optuna"}


def test_edge_modules_import_no_heavy_dependency():
    root = Path(crowdloop.__file__).parent
    done = subprocess.run([sys.executable, "-c", PROBE, str(root)], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout))
    assert {"numpy", "httpx", "prometheus_client"} <= loaded  # onnxruntime: imported when a model loads
    assert loaded & HEAVY == set()
