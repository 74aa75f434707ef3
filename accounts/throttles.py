"""DRF throttles whose rates come from settings at request time.

DRF's own classes copy the rates at import, so settings overrides (tests, env reloads) would not
reach them. Over the limit DRF answers 429 with a `Retry-After` header.
"""

from django.conf import settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

_DISABLED = {"", "off", "none"}


class _SettingsRate:
    scope: str

    def get_rate(self) -> str | None:
        rate = settings.API_THROTTLE_RATES.get(self.scope)
        return None if rate is None or rate.lower() in _DISABLED else rate


class AnonThrottle(_SettingsRate, AnonRateThrottle):
    scope = "anon"


class UserThrottle(_SettingsRate, UserRateThrottle):
    scope = "user"
