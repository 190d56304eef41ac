"""Monitoring: Prometheus metrics of the server (:mod:`.metrics`, :mod:`.crowd_metrics`) and drift
statistics for deployed models (:mod:`.drift`, pure numpy/scipy)."""
