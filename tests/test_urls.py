"""The one URL check (crowdloop.urls): a server's for the SDK, the CLI and the edge, a webhook's."""

from __future__ import annotations

import pytest

from crowdloop.errors import InvalidParameterError
from crowdloop.urls import http_url, server_url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("127.0.0.1:8000", "must be an absolute http:// or https:// URL with a host, e.g. http://127.0.0.1:8000"),
        ("localhost:8000", "got 'localhost:8000'"),
        ("ftp://example.org", "must be an absolute http:// or https:// URL"),
        ("http://exa mple.org", "got 'http://exa mple.org'"),
        ("http://::1:8000", "an IPv6 address goes in brackets: http://[::1]:8000"),
        ("http://host:99999", "has port 99999, not one from 1 to 65535"),
        ("http://host/?q=1", "takes no ?query or #fragment"),
        ("http://host#top", "takes no ?query or #fragment"),
        ("admin:secret@host:8000", "got '...@host:8000'"),  # the password is not repeated
    ],
)
def test_a_server_url_crowdloop_cannot_call_is_refused_saying_why(url, message):
    with pytest.raises(InvalidParameterError) as refused:
        server_url(url)
    assert message in str(refused.value) and "secret" not in str(refused.value)


@pytest.mark.parametrize("url", ["http://[::1]:8000", "HTTPS://Example.org", " http://10.0.0.5:8000/crowd/ "])
def test_a_server_url_it_can_call_is_kept(url):
    assert server_url(url) == url.strip()


def test_a_webhook_url_may_carry_a_query():
    """Receivers often take their secret in the query (a base URL may not: paths go after it)."""
    assert http_url("https://hooks.example.com/x?token=1", "a webhook url") == "https://hooks.example.com/x?token=1"
