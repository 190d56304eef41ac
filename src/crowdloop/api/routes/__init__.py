"""All routers of the API, mounted under /api/v1 by ``create_app``."""

from crowdloop.api.routes import (
    drift,
    edge,
    exports,
    items,
    models,
    projects,
    review,
    system,
    tasks,
    users,
    webhooks,
    work,
    workers,
)

ROUTERS = [
    tasks.router,  # the worker's loop first: a request is matched against the routes in this order
    work.router,
    system.router,
    users.router,
    projects.router,
    items.router,
    workers.router,
    exports.router,
    webhooks.router,
    review.router,
    models.router,
    drift.router,
    edge.router,
]
