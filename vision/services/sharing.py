"""Share links: a signed, expiring, read-only link to one document (its pages and, if chosen, its
latest extraction), opened without an account, revocable, every open an audit event.

The link's secret (`secrets.token_urlsafe(32)`) is shown once, inside the URL token, and only its
SHA-256 is stored. The token is `django.core.signing.dumps({"l": id, "s": secret})` under its own
salt: a tampered or made-up token fails the signature before any database lookup. Whatever check
fails (signature, secret, revoked, expired, document gone), the answer is the same NotFound, so a
caller learns nothing about which links exist.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from docplatform.errors import NotFound, PermissionDenied, ValidationFailed
from vision.models import Document, ExtractionEvent, ExtractionEventAction, ShareLink

logger = logging.getLogger(__name__)

TOKEN_SALT = "docplatform.share"
MIN_LIFETIME = timedelta(hours=1)
_NOT_FOUND = "This share link does not exist or is no longer valid."
_WRITE_KEY_SCOPE = "write"  # accounts.models.ApiKeyScope.WRITE: uploads, jobs, deletes, shares
_USER_AGENT_CHARS = 200


def share_link_lifetime(expires_in: timedelta | None) -> timedelta:
    """`expires_in`, or SHARE_LINK_DEFAULT_DAYS; ValidationFailed outside 1 hour..SHARE_LINK_MAX_DAYS."""
    if expires_in is None:
        return timedelta(days=settings.SHARE_LINK_DEFAULT_DAYS)
    longest = timedelta(days=settings.SHARE_LINK_MAX_DAYS)
    if not MIN_LIFETIME <= expires_in <= longest:
        raise ValidationFailed(f"A share link lives between 1 hour and {settings.SHARE_LINK_MAX_DAYS} days.")
    return expires_in


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _require_write(scope) -> None:
    """Any member may share the organisation's documents; an API key also needs `write`."""
    if scope.user is None:
        raise PermissionDenied("Only a member can share a document.")
    if scope.api_key is not None and _WRITE_KEY_SCOPE not in scope.api_key.scopes:
        raise PermissionDenied(f"This API key lacks the '{_WRITE_KEY_SCOPE}' scope.")


def share_link_create(
    *, scope, document: Document, expires_in: timedelta | None = None, include_extraction: bool = False
) -> tuple[ShareLink, str]:
    """A new link to `document` (of the scope's organisation) and its URL token, which is shown
    once: only the secret's hash is kept."""
    _require_write(scope)
    if document.organization_id != scope.organization.pk:
        raise NotFound(f"Document {document.pk} not found.")
    lifetime = share_link_lifetime(expires_in)
    secret = secrets.token_urlsafe(32)
    with transaction.atomic():
        link = ShareLink.objects.create(
            organization_id=document.organization_id,
            document=document,
            created_by=scope.user,
            secret_hash=_secret_hash(secret),
            include_extraction=include_extraction,
            expires_at=timezone.now() + lifetime,
        )
        ExtractionEvent.objects.create(
            organization_id=document.organization_id,
            document_id=document.pk,
            actor=scope.user,
            action=ExtractionEventAction.SHARED,
            detail={
                "share_link": link.pk,
                "expires_at": link.expires_at.isoformat(),
                "include_extraction": include_extraction,
            },
        )
    logger.info(
        "share link %s of document %s created: organization=%s user=%s expires=%s extraction=%s",
        link.pk,
        document.pk,
        document.organization_id,
        scope.user.pk,
        link.expires_at.isoformat(),
        include_extraction,
    )
    token = signing.dumps({"l": link.pk, "s": secret}, salt=TOKEN_SALT)
    return link, token


def share_link_revoke(*, scope, link_id: int) -> ShareLink:
    """Revoke a link of the scope's organisation: its creator or an admin of the organisation.
    Revoking twice keeps the first time."""
    link = ShareLink.objects.filter(organization=scope.organization, pk=link_id).first()
    if link is None:
        raise NotFound(f"Share link {link_id} not found.")
    _require_write(scope)
    if link.created_by_id != scope.user.pk and not scope.can_administer:
        raise PermissionDenied("Only the link's creator or an admin of the organisation can revoke it.")
    if link.revoked_at is not None:
        return link
    with transaction.atomic():
        updated = ShareLink.objects.filter(pk=link.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        if updated:
            ExtractionEvent.objects.create(
                organization_id=link.organization_id,
                document_id=link.document_id,
                actor=scope.user,
                action=ExtractionEventAction.SHARE_REVOKED,
                detail={"share_link": link.pk},
            )
    link.refresh_from_db()
    logger.info("share link %s of document %s revoked by user %s", link.pk, link.document_id, scope.user.pk)
    return link


def share_link_resolve(*, token: str) -> ShareLink:
    """The valid link `token` names, with its document; no side effect (page images use it).
    NotFound, with one message, whatever the reason."""
    try:
        payload = signing.loads(token, salt=TOKEN_SALT)
    except signing.BadSignature:
        raise NotFound(_NOT_FOUND) from None
    if not isinstance(payload, dict):
        raise NotFound(_NOT_FOUND)
    link_id, secret = payload.get("l"), payload.get("s")
    if not isinstance(link_id, int) or isinstance(link_id, bool) or not isinstance(secret, str):
        raise NotFound(_NOT_FOUND)
    link = ShareLink.objects.select_related("document").filter(pk=link_id).first()
    if link is None or not hmac.compare_digest(link.secret_hash, _secret_hash(secret)):
        raise NotFound(_NOT_FOUND)
    if link.revoked_at is not None or link.expires_at <= timezone.now():
        raise NotFound(_NOT_FOUND)
    if not Document.objects.filter(pk=link.document_id, organization_id=link.organization_id).exists():
        raise NotFound(_NOT_FOUND)
    return link


def share_link_open(*, token: str, ip: str | None, user_agent: str) -> ShareLink:
    """Open the link `token` names: checked as `share_link_resolve` does, then counted and
    written to the organisation's audit trail (`share_opened`, with the IP and user agent)."""
    link = share_link_resolve(token=token)
    now = timezone.now()
    with transaction.atomic():
        ShareLink.objects.filter(pk=link.pk).update(open_count=F("open_count") + 1, last_opened_at=now)
        ExtractionEvent.objects.create(
            organization_id=link.organization_id,
            document_id=link.document_id,
            action=ExtractionEventAction.SHARE_OPENED,
            detail={"share_link": link.pk, "ip": ip, "user_agent": (user_agent or "")[:_USER_AGENT_CHARS]},
        )
    link.refresh_from_db(fields=["open_count", "last_opened_at"])
    return link
