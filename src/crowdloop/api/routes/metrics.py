"""``GET /metrics``: Prometheus' scrape target, at the root as Prometheus expects.

Who may scrape: an admin's token, or ``CROWDLOOP_METRICS_TOKEN`` when it is set, a credential
that opens this route and nothing else (give Prometheus that one, not an admin's). Project ids
and volumes are business data, so the route is never open without a token.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from crowdloop.api.access_log import note_caller
from crowdloop.api.deps import ApiDep
from crowdloop.monitoring.metrics import ServerMetrics, is_metrics_token

router = APIRouter(tags=["monitoring"])


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(request: Request, api: ApiDep) -> Response:
    server: ServerMetrics = request.app.state.metrics
    if is_metrics_token(api.settings.metrics_token, api.token):
        note_caller("metrics")
        body = api.run_anonymous(server.render)
    else:
        body = api.run(server.render_for)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
