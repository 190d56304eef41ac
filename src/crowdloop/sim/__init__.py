"""Simulated and replayed crowds, and the policies and drivers that run them.

- crowds: :class:`SimulatedCrowd` (a population from :func:`make_population`: reliable, noisy,
  spammer, adversarial and class-biased workers with answer times) and :class:`ReplayedCrowd`
  (a recorded crowd: each worker gives the answer they really gave, on the items they saw);
- policies: :class:`FixedOverlap`, :class:`DynamicOverlap` and :class:`ActiveLearning` (see
  :mod:`crowdloop.sim.policies` for the interface a new policy implements);
- drivers: :func:`run_in_process` (fast, no server) and :func:`run_over_http` (the crowd works
  on a real server through the SDK).

    >>> from crowdloop.datasets import load_dataset
    >>> data = load_dataset("wsd")
    >>> result = run_in_process(ReplayedCrowd(data.answers), FixedOverlap(3), random_state=0)
    >>> result.summary(data.gold)["labels_per_item"]
    3.0
"""

from crowdloop.sim.crowds import Crowd, CrowdAnswer, ReplayedCrowd
from crowdloop.sim.driver import SimulationResult, label_accuracy, run_in_process
from crowdloop.sim.http import run_over_http
from crowdloop.sim.policies import POLICIES, DynamicOverlap, FixedOverlap, Policy

# isort: off
from crowdloop.sim.active import ActiveLearning  # after policies: it subclasses Policy, and policies imports it

# isort: on
from crowdloop.sim.population import KINDS, SimulatedCrowd, WorkerProfile, make_population
from crowdloop.sim.synthetic import SyntheticCrowd, synthetic_answers

__all__ = [
    "KINDS",
    "POLICIES",
    "ActiveLearning",
    "Crowd",
    "CrowdAnswer",
    "DynamicOverlap",
    "FixedOverlap",
    "Policy",
    "ReplayedCrowd",
    "SimulatedCrowd",
    "SimulationResult",
    "SyntheticCrowd",
    "WorkerProfile",
    "label_accuracy",
    "make_population",
    "run_in_process",
    "run_over_http",
    "synthetic_answers",
]
