"""API keys: create (the raw key is shown once, in the response to the POST) with its scopes and
an optional expiry date, list (admins see every member's keys of the organisation), revoke. A key
belongs to the organisation the user acts in."""

from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts.roles import Role
from accounts.scope import Scope, scope_of
from accounts.selectors import api_key_list
from accounts.services import DEFAULT_KEY_SCOPES, api_key_create, api_key_revoke
from docplatform.errors import ApplicationError, ValidationFailed

# The key scopes the form offers, and the role each needs (accounts.services checks it again).
SCOPE_ROLES = {"read": Role.MEMBER, "write": Role.MEMBER, "review": Role.REVIEWER, "admin": Role.ADMIN}
# Set by the page's form: without it (a script posting only a name) the key gets the default scopes.
SCOPES_FIELD = "scopes_given"


def _offered_scopes(scope: Scope) -> list[str]:
    return [name for name, role in SCOPE_ROLES.items() if scope.has_role(role)]


def _expiry(value: str) -> datetime | None:
    """The key works through the chosen day (local time) and stops at the midnight after it."""
    value = value.strip()
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(_("The expiry date is not a date.")) from None
    if day < timezone.localdate():
        raise ValidationFailed(_("The expiry date must be today or later."))
    return timezone.make_aware(datetime.combine(day + timedelta(days=1), time.min))


def _create(request: HttpRequest, scope: Scope):
    scopes = request.POST.getlist("scopes") if SCOPES_FIELD in request.POST else None
    if scopes is not None and not scopes:
        raise ValidationFailed(_("Choose at least one scope."))
    if scopes is not None and any(name not in SCOPE_ROLES for name in scopes):
        raise ValidationFailed(_("Unknown scope."))
    return api_key_create(
        scope=scope,
        name=request.POST.get("name", ""),
        scopes=scopes,
        expires_at=_expiry(request.POST.get("expires", "")),
    )


@never_cache
@login_required
def keys(request: HttpRequest) -> HttpResponse:
    scope = scope_of(request)
    context: dict = {
        "base_url": request.build_absolute_uri("/v1"),
        "model": settings.VISION_SERVED_MODEL_NAME,
        "organization": scope.organization,
        "offered_scopes": _offered_scopes(scope),
        "checked_scopes": [s.value for s in DEFAULT_KEY_SCOPES],
        "today": timezone.localdate(),
        "all_keys": scope.can_administer,
        "now": timezone.now(),
    }
    if request.method == "POST":
        try:
            context["created"] = _create(request, scope)
        except ApplicationError as exc:
            context["error"] = exc.message
            if SCOPES_FIELD in request.POST:  # keep what the user ticked
                context["checked_scopes"] = request.POST.getlist("scopes")
    context["keys"] = api_key_list(scope=scope)
    return render(request, "portal/keys.html", context)


@require_POST
@login_required
def key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    try:
        api_key = api_key_revoke(scope=scope_of(request), key_id=key_id)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("Key “%(name)s” revoked.") % {"name": api_key.name})
    return redirect("portal-keys")
