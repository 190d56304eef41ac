"""The one check of an http:// or https:// URL crowdloop is given: a server's (the SDK, the CLI's
``--url``, the edge's ``--server``) and a webhook receiver's. It imports httpx alone, so the edge
can use it without the platform's dependencies."""

from __future__ import annotations

import httpx

from crowdloop.errors import InvalidParameterError


def http_url(url: str, what: str, *, hint: str = "", base: bool = False) -> str:
    """``url`` without the spaces around it, when it is an absolute ``http://`` or ``https://`` URL
    with a host (and, for a ``base`` other paths are added to, no query or fragment); else an
    :class:`InvalidParameterError` saying ``what`` must be one, with ``hint`` (an example).

    ``127.0.0.1:8000`` is read by httpx as a URL with no scheme and ``localhost:8000`` as one of
    scheme ``localhost``: each failed at its first request as if the server were away. A user
    name and password in a refused URL are left out of the message.
    """
    url = url.strip()
    shown = _shown(url)
    problem = f"{what} must be an absolute http:// or https:// URL with a host{hint}; got {shown!r}."
    if any(char.isspace() for char in url):
        raise InvalidParameterError(problem)
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        brackets = "; an IPv6 address goes in brackets: http://[::1]:8000" if url.count(":") > 2 else ""
        raise InvalidParameterError(f"{problem[:-1]} ({error}{brackets}).") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidParameterError(problem)
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise InvalidParameterError(f"{what} {shown!r} has port {parsed.port}, not one from 1 to 65535.")
    if base and (parsed.query or parsed.fragment):
        raise InvalidParameterError(f"{what} {shown!r} takes no ?query or #fragment: the API's paths go after it.")
    return url


def origin(url: str | httpx.URL) -> str:
    """``scheme://host[:port]`` of ``url``, the scheme and host in lower case and an IPv6 host in
    brackets: what a log may show of a URL whose user, path or query often carry a secret, and the
    part of a server's address two spellings of it share. Raises ``httpx.InvalidURL``."""
    parsed = url if isinstance(url, httpx.URL) else httpx.URL(url.strip())
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    port = "" if parsed.port is None else f":{parsed.port}"  # httpx leaves a default port out already
    return f"{parsed.scheme.lower()}://{host.lower()}{port}"


def server_url(url: str) -> str:
    """``url`` checked as a crowdloop server's: a bad one failed at the first request as if the
    server were away, and the edge kept it as its server's."""
    return http_url(url, "the server URL", hint=", e.g. http://127.0.0.1:8000", base=True)


def _shown(url: str) -> str:
    """``url`` with anything before an ``@`` (a user name and password) left out."""
    return "..." + url[url.rindex("@") :] if "@" in url else url
