"""``crowdloop demo``: the whole loop, from a replayed real crowd to an edge model and back.

>>> from crowdloop.demo import DemoConfig, run_demo
>>> result = run_demo(DemoConfig(rounds=2, items=900))   # doctest: +SKIP
>>> [r.model_accuracy for r in result.rounds]             # doctest: +SKIP
"""

from crowdloop.demo.loop import DemoConfig, DemoResult, Progress, run_demo
from crowdloop.demo.rounds import RoundMetrics

__all__ = ["DemoConfig", "DemoResult", "Progress", "RoundMetrics", "run_demo"]
