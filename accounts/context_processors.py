"""What every portal page's header shows about the organisation: the request's scope (its
organisation and role: the Review link, the switcher's current entry) and the organisations the
user can switch to.

Runs for every template rendered with a request, error pages included: it never raises. An
anonymous visitor, a request without a user (a 500 page rendered before the middleware ran) or a
failing lookup (a bad `X-Organization` header, the database gone) gets no scope and no list.
"""

from __future__ import annotations

import logging

from accounts.scope import scope_of
from accounts.selectors import organization_list

logger = logging.getLogger(__name__)

EMPTY: dict = {"current_scope": None, "my_organizations": []}


def organization(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return dict(EMPTY)
    try:
        scope = scope_of(request)
        organizations = list(organization_list(scope=scope))
    except Exception as exc:  # the header must render whatever went wrong; the page says the rest
        logger.warning("organisation context unavailable for %s: %s", request.path, exc)
        return dict(EMPTY)
    return {"current_scope": scope, "my_organizations": organizations}
