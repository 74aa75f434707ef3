"""Authentication and throttling for the async /v1 views, through the project's DRF classes.

DRF's APIView is sync, so the views are plain Django async views; this runs the configured
authenticators (API key, JWT, session with its CSRF check) and throttles in one sync call (DB and
cache access) and maps their refusals to OpenAI errors: 401, and 429 with Retry-After.
"""

from __future__ import annotations

import math

from django.http import HttpRequest
from rest_framework import exceptions
from rest_framework.parsers import BaseParser, DataAndFiles
from rest_framework.request import Request
from rest_framework.settings import api_settings

from docplatform.aio import pooled_sync_to_async
from vision.openai.errors import OpenAIError

_MISSING = (
    "You didn't provide an API key. Send it as 'Authorization: Bearer dp_...' "
    "(a personal API key) or a JWT access token."
)


class _BodyUntouched(BaseParser):
    """Lets session auth run its CSRF check without parsing the body.

    The check reads `request.POST`; on a DRF Request with no parsers that raises
    UnsupportedMediaType for a JSON body (a 500 for portal users), and a real parser would consume
    the stream the view reads afterwards. This one claims every media type and reads nothing, so
    the CSRF token must come in the X-CSRFToken header, as the portal's scripts send it.
    """

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None) -> DataAndFiles:
        return DataAndFiles({}, {})


def _authenticate(request: HttpRequest, key_scope: str):
    from accounts.models import ApiKey
    from accounts.scope import scope_of
    from accounts.services import api_usage_record
    from docplatform.errors import NotFound
    from docplatform.metrics.web import V1_REQUESTS, organization_label

    drf_request = Request(
        request,
        parsers=[_BodyUntouched()],
        authenticators=[cls() for cls in api_settings.DEFAULT_AUTHENTICATION_CLASSES],
    )
    try:
        user = drf_request.user
    except exceptions.AuthenticationFailed as exc:
        raise OpenAIError(401, str(exc.detail), code="invalid_api_key") from None
    except exceptions.PermissionDenied as exc:  # session auth without a valid CSRF token
        raise OpenAIError(403, str(exc.detail), code="csrf_failed") from None
    if user is None or not user.is_authenticated:
        raise OpenAIError(401, _MISSING, code="missing_api_key")
    if not user.is_active:
        raise OpenAIError(401, "This account is disabled.", code="account_disabled")
    for throttle_class in api_settings.DEFAULT_THROTTLE_CLASSES:
        throttle = throttle_class()
        if not throttle.allow_request(drf_request, None):
            wait = throttle.wait()
            raise OpenAIError(
                429,
                "Rate limit reached for requests. Slow down and retry after the time in Retry-After.",
                code="rate_limit_exceeded",
                retry_after=max(math.ceil(wait or 1), 1),
            )
    api_key = drf_request.auth if isinstance(drf_request.auth, ApiKey) else None
    if api_key is not None and key_scope not in api_key.scopes:
        raise OpenAIError(403, f"This API key lacks the '{key_scope}' scope.", code="insufficient_scope")
    try:
        scope = scope_of(drf_request)
    except NotFound as exc:  # an X-Organization the user is no member of
        raise OpenAIError(404, exc.message, param="X-Organization", code="organization_not_found") from None
    if key_scope == "write":  # a request that runs the model: counted per organisation and key
        api_usage_record(scope=scope)
        V1_REQUESTS.labels(organization_label(scope.organization.slug)).inc()
    return scope


async def authenticate(request: HttpRequest, *, key_scope: str = "read"):
    """→ the caller's `accounts.scope.Scope`, or OpenAIError (401/403/404/429). `key_scope`: what
    an API key needs for this route ("read" to list models, "write" to run the model)."""
    return await pooled_sync_to_async(_authenticate)(request, key_scope)
