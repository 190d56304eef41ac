"""crowdloop: crowdsourcing and human computation for AI, the whole loop."""

__version__ = "0.1.0"
