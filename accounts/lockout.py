"""Failed-login lockout, shared by the portal login form and the JWT obtain endpoint.

After LOGIN_LOCKOUT_ATTEMPTS failures for one username from one client IP within
LOGIN_LOCKOUT_WINDOW_SECONDS, that pair is locked for LOGIN_LOCKOUT_SECONDS. Counting per pair
(not per username) means an attacker cannot lock a victim out from elsewhere. State lives in the
shared cache, so every web process sees the same counts.
"""

import hashlib
import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy rewrites it
    # (uvicorn --proxy-headers does that for the proxies it trusts).
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def _key(kind: str, username: str, ip: str) -> str:
    digest = hashlib.sha256(f"{username.strip().lower()}|{ip}".encode()).hexdigest()[:32]
    return f"login:{kind}:{digest}"


def login_lock_remaining(*, username: str, ip: str) -> int:
    """Seconds until this username+IP may try again; 0 when not locked."""
    locked_until = cache.get(_key("locked", username, ip))
    if locked_until is None:
        return 0
    return max(int(locked_until - time.time()) + 1, 0)


def login_failure_record(*, username: str, ip: str) -> int:
    """Count a failed attempt; lock the pair when the limit is reached. Returns the lock time in
    seconds (0 if not locked)."""
    failures_key = _key("failures", username, ip)
    cache.add(failures_key, 0, timeout=settings.LOGIN_LOCKOUT_WINDOW_SECONDS)
    try:
        failures = cache.incr(failures_key)
    except ValueError:  # the window expired between add() and incr()
        cache.set(failures_key, 1, timeout=settings.LOGIN_LOCKOUT_WINDOW_SECONDS)
        failures = 1
    if failures < settings.LOGIN_LOCKOUT_ATTEMPTS:
        return 0
    cache.set(
        _key("locked", username, ip),
        time.time() + settings.LOGIN_LOCKOUT_SECONDS,
        settings.LOGIN_LOCKOUT_SECONDS,
    )
    cache.delete(failures_key)
    return settings.LOGIN_LOCKOUT_SECONDS


def login_failures_reset(*, username: str, ip: str) -> None:
    cache.delete(_key("failures", username, ip))


def lockout_message(seconds: int) -> str:
    minutes = max((seconds + 59) // 60, 1)
    return f"Too many failed login attempts. Try again in {minutes} minute{'s' if minutes != 1 else ''}."
