"""ASGI entry point: `uvicorn docplatform.asgi:application`. Never imports torch.

Django's ASGIHandler runs every request inside its own asgiref `ThreadSensitiveContext`: the first
sync call of the request (Django's own `request_started` receivers, every MiddlewareMixin hook)
starts a single-thread executor that lives until the response ends. For a `/v1` stream that is a
parked thread for minutes: 64 streams held 68 threads (bench/results/web-streams-tiny.md).

Requests whose view is async (the `/v1` API, the portal's chat stream, the probes, /metrics)
therefore skip that context here. Django's short sync steps for them (signal receivers,
middleware hooks) share asgiref's one process-wide sync thread, and their database work runs in
the bounded pool of `docplatform.aio`. Requests to sync views (DRF, portal pages, admin, static
files) keep Django's behaviour: their sync view runs in a thread of its own.
"""

import os

from asgiref.sync import iscoroutinefunction
from django.core.asgi import get_asgi_application
from django.core.handlers.asgi import ASGIHandler
from django.urls import Resolver404, get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "docplatform.settings")


def is_async_view(path: str) -> bool:
    try:
        match = get_resolver().resolve(path)
    except Resolver404:
        return False
    return iscoroutinefunction(match.func)


class DocPlatformASGIHandler(ASGIHandler):
    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and is_async_view(scope["path"]):
            await self.handle(scope, receive, send)  # no per-request thread
        else:
            await super().__call__(scope, receive, send)


get_asgi_application()  # django.setup(), as Django's own entry point does
application = DocPlatformASGIHandler()
