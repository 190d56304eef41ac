"""Scraping a real server's /metrics and reading samples out of it (helpers for the monitoring tests)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Exposition:
    """One scrape: every sample by (name, labels), and every name the text declares or uses."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    names: frozenset[str]

    def value(self, name: str, **labels: str) -> float:
        """The sample's value, 0 when the series is absent (as Prometheus' ``or vector(0)`` would read it)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def series(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        return {labels: value for (sample, labels), value in self.samples.items() if sample == name}


def parse(text: str) -> Exposition:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name + ("_total" if family.type == "counter" else ""))
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_count", "_sum"))
        for sample in family.samples:
            names.add(sample.name)
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Exposition(samples, frozenset(names))


def scrape(url: str, token: str) -> Exposition:
    """GET /metrics on a fresh connection (so, with several processes, any of them may answer)."""
    response = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)
