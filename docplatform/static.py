"""WhiteNoise as an async-capable middleware.

WhiteNoise's middleware is sync only, and one sync middleware makes Django run the whole chain of
an ASGI request through a thread (for a streaming /v1 request: a thread per open stream). This
subclass answers async requests without one: a request outside STATIC_URL goes straight on, and a
static file's lookup and open (file I/O) run in the shared pool of `docplatform.aio`.
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware

from docplatform.aio import pooled_sync_to_async


class AsyncWhiteNoiseMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response, settings=settings) -> None:
        super().__init__(get_response, settings)
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if self._async:
            return self.__acall__(request)
        return super().__call__(request)

    def _lookup_and_serve(self, request: HttpRequest) -> HttpResponseBase | None:
        static_file = (
            self.find_file(request.path_info) if self.autorefresh else self.files.get(request.path_info)
        )
        return None if static_file is None else self.serve(static_file, request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        if request.path_info.startswith(self.static_prefix) or self.autorefresh:
            response = await pooled_sync_to_async(self._lookup_and_serve)(request)
            if response is not None:
                return response
        return await self.get_response(request)
