"""The web UI: static pages (HTML, ES modules, CSS) over the JSON API, served under /ui.

The pages hold no data: they are the same files for everybody and fetch everything from
``/api/v1`` with the bearer token the user signed in with (kept in the browser's session or
local storage). Nothing is loaded from another origin: the charts are SVG drawn by the
page's own script, and the Content-Security-Policy allows scripts, styles and requests only
to this server (images, which items may link to, may come from anywhere).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC = Path(__file__).parent / "static"
UI_PATH = "/ui"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data: https: http:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


class UiFiles(StaticFiles):
    """Static files with the UI's security headers; revalidated on each load (ETag), so updates show."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def mount_web(app: FastAPI) -> None:
    """Serve the pages under /ui, and send visitors of / there."""
    app.mount(UI_PATH, UiFiles(directory=STATIC, html=True), name="ui")

    @app.get("/", include_in_schema=False)
    async def home() -> Any:
        return RedirectResponse(f"{UI_PATH}/", status_code=307)
