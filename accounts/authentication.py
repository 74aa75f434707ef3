"""`Authorization: Bearer dp_…` with a personal API key, next to JWT Bearer tokens.

OpenAI SDK users configure one static key, so keys work on /api and /v1 alike. A Bearer value
without the `dp_` prefix is left to the JWT authenticator that follows in the settings.
"""

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts.keys import API_KEY_PREFIX
from accounts.models import ApiKey, User
from accounts.selectors import api_key_get_active
from accounts.services import api_key_touch


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[User, ApiKey] | None:
        parts = authentication.get_authorization_header(request).split()
        if len(parts) != 2 or parts[0].lower() != self.keyword:
            return None
        try:
            raw_key = parts[1].decode()
        except UnicodeDecodeError:
            return None
        if not raw_key.startswith(API_KEY_PREFIX):
            return None
        api_key = api_key_get_active(raw_key=raw_key)
        if api_key is None:
            raise exceptions.AuthenticationFailed(
                "Invalid, expired or revoked API key.", code="invalid_api_key"
            )
        api_key_touch(api_key=api_key)
        return api_key.user, api_key

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) to unauthenticated requests.
        return 'Bearer realm="api"'
