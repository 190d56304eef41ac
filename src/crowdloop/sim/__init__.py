"""Simulated crowds: synthetic answers with known truth, for tests and benchmarks."""

from crowdloop.sim.synthetic import SyntheticCrowd, synthetic_answers

__all__ = ["SyntheticCrowd", "synthetic_answers"]
