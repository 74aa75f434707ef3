"""API keys: create (the raw key is shown once, in the response to the POST), list, revoke."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts.scope import scope_of
from accounts.selectors import api_key_list
from accounts.services import api_key_create, api_key_revoke
from docplatform.errors import ApplicationError


@never_cache
@login_required
def keys(request: HttpRequest) -> HttpResponse:
    context: dict = {
        "base_url": request.build_absolute_uri("/v1"),
        "model": settings.VISION_SERVED_MODEL_NAME,
    }
    if request.method == "POST":
        try:
            context["created"] = api_key_create(scope=scope_of(request), name=request.POST.get("name", ""))
        except ApplicationError as exc:
            context["error"] = exc.message
    context["keys"] = api_key_list(scope=scope_of(request))
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
