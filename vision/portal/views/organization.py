"""The organisation page: its members and their roles (admins of a team add, change and remove
them), a form to create a team organisation, its /v1 usage, and its audit trail (reviewers and
admins; the CSV export admins only). Also the header's switcher. Every change is one accounts
service call; the ids of members and organisations travel in the POST body, never in the URL."""

from __future__ import annotations

import csv
from collections.abc import Iterator

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from accounts.roles import ROLE_ORDER, Role
from accounts.scope import scope_of
from accounts.selectors import api_usage_list, api_usage_totals, membership_list
from accounts.services import (
    membership_add,
    membership_remove,
    membership_set_role,
    organization_create,
)
from accounts.services import organization_switch as organization_switch_service
from docplatform.errors import ApplicationError, NotFound
from vision.portal.selectors import audit_events

AUDIT_ROWS = 100
USAGE_DAYS = 30
AUDIT_CSV_COLUMNS = ["time", "actor", "action", "document_id", "extraction_id", "field", "comment"]


@never_cache
@login_required
def organization(request: HttpRequest) -> HttpResponse:
    scope = scope_of(request)
    manages = scope.can_administer and not scope.organization.personal
    context = {
        "scope": scope,
        "organization": scope.organization,
        "members": membership_list(scope=scope),
        "manages_members": manages,
        "roles": ROLE_ORDER,
        "usage": api_usage_list(scope=scope, days=USAGE_DAYS),
        "usage_totals": api_usage_totals(scope=scope, days=USAGE_DAYS),
        "usage_days": USAGE_DAYS,
        "shows_audit": scope.can_review,
        "exports_audit": scope.can_administer,
        "events": audit_events(scope=scope, limit=AUDIT_ROWS) if scope.can_review else [],
        "audit_rows": AUDIT_ROWS,
    }
    return render(request, "portal/organization.html", context)


def _role(value: str) -> Role | None:
    try:
        return Role(value)
    except ValueError:
        return None


def _int(value: str) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@require_POST
@login_required
def organization_new(request: HttpRequest) -> HttpResponse:
    """A team organisation: its creator is its admin and acts in it from now on."""
    try:
        created = organization_create(user=request.user, name=request.POST.get("name", ""))
        organization_switch_service(user=request.user, organization_id=created.pk)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, _("Organisation “%(name)s” created; you are its admin.") % {"name": created.name}
        )
    return redirect("portal-organization")


@require_POST
@login_required
def organization_switch(request: HttpRequest) -> HttpResponse:
    """The header's switcher: act in another of the user's organisations. One the user is not a
    member of does not exist for them (404)."""
    organization_id = _int(request.POST.get("organization", ""))
    if organization_id is None:
        raise Http404(_("Organisation not found."))
    try:
        switched = organization_switch_service(user=request.user, organization_id=organization_id)
    except NotFound as exc:
        raise Http404(exc.message) from None
    messages.success(request, _("You are now working in “%(name)s”.") % {"name": switched.name})
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = "portal-home"
    return redirect(target)


@require_POST
@login_required
def member_add(request: HttpRequest) -> HttpResponse:
    role = _role(request.POST.get("role", ""))
    username = request.POST.get("username", "").strip()
    if role is None:
        messages.error(request, _("Choose a role."))
        return redirect("portal-organization")
    try:
        membership = membership_add(scope=scope_of(request), username=username, role=role)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("%(username)s added.") % {"username": membership.user.username})
    return redirect("portal-organization")


@require_POST
@login_required
def member_set_role(request: HttpRequest) -> HttpResponse:
    role = _role(request.POST.get("role", ""))
    user_id = _int(request.POST.get("user_id", ""))
    if role is None or user_id is None:
        messages.error(request, _("Choose a member and a role."))
        return redirect("portal-organization")
    try:
        membership = membership_set_role(scope=scope_of(request), user_id=user_id, role=role)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("%(username)s’s role changed.") % {"username": membership.user.username})
    return redirect("portal-organization")


@require_POST
@login_required
def member_remove(request: HttpRequest) -> HttpResponse:
    user_id = _int(request.POST.get("user_id", ""))
    if user_id is None:
        messages.error(request, _("Choose a member."))
        return redirect("portal-organization")
    try:
        membership_remove(scope=scope_of(request), user_id=user_id)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("Member removed; their API keys of this organisation are revoked."))
    return redirect("portal-organization")


class _Echo:
    """A file whose write returns the line: csv.writer formats, the response streams."""

    def write(self, value: str) -> str:
        return value


@require_GET
@login_required
def audit_csv(request: HttpRequest) -> StreamingHttpResponse:
    """The organisation's whole audit trail as CSV, newest first (admins only: 403 otherwise)."""
    scope = scope_of(request)
    if not scope.can_administer:
        raise PermissionDenied
    writer = csv.writer(_Echo())

    def rows() -> Iterator[str]:
        yield writer.writerow(AUDIT_CSV_COLUMNS)
        for event in audit_events(scope=scope).iterator(chunk_size=500):
            yield writer.writerow(
                [
                    event.created_at.isoformat(),
                    _csv_safe(event.actor.username if event.actor else ""),
                    event.action,
                    "" if event.document_id is None else event.document_id,
                    "" if event.extraction_id is None else event.extraction_id,
                    _csv_safe(event.field),
                    _csv_safe(event.comment),
                ]
            )

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-{scope.organization.slug}.csv"'
    response["Cache-Control"] = "no-store"
    return response


def _csv_safe(text: str) -> str:
    """Names and comments are user text: one starting like a formula is prefixed, so a spreadsheet
    shows it as text instead of running it."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
