"""Names inside an exported artifact folder, shared by the exporter and the edge (no imports)."""

from __future__ import annotations

ONNX_FILE = "model.onnx"
EDGE_FILE = "edge.json"
FEATURES_FILE = "features.json"
INPUT_NAME = "features"
OUTPUT_NAME = "probabilities"
