"""Runs one Crowd-Kit aggregation in Crowd-Kit's own environment (reads a JSON job on stdin).

Job: {"answers": path, "method": name, "out": path}. Prints {"seconds": s} as the
last stdout line and writes the labels (task,label) to ``out`` as CSV. Kept free
of crowdloop imports so it runs in a separate virtual environment.
"""

import json
import sys
import time

import pandas as pd
from crowdkit import aggregation

job = json.loads(sys.stdin.read())
answers = pd.read_parquet(job["answers"]) if job["answers"].endswith(".parquet") else pd.read_csv(job["answers"])
method = getattr(aggregation, job["method"])()
started = time.perf_counter()
labels = method.fit_predict(answers)
seconds = time.perf_counter() - started
labels.rename("label").rename_axis("task").reset_index().to_csv(job["out"], index=False)
print(json.dumps({"seconds": seconds}))
