from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from accounts.models import ApiKey, ApiKeyScope
from accounts.scope import scope_of


class IsReviewer(BasePermission):
    """Reviewers and admins of the request's organisation (a key also needs the review scope)."""

    message = "This endpoint is for reviewers."

    def has_permission(self, request: Request, view: object) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and scope_of(request).can_review)


class ApiKeyScopes(BasePermission):
    """What an API key may do: `read` for GET, HEAD and OPTIONS, `write` for the rest, or the
    scope a view names in `required_key_scope` (review, admin). JWT and session requests are not
    limited here: their user's role decides, in the services."""

    message = "This API key lacks the scope this request needs."

    def has_permission(self, request: Request, view: object) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return True
        needed = getattr(view, "required_key_scope", None)
        if needed is None:
            needed = ApiKeyScope.READ if request.method in SAFE_METHODS else ApiKeyScope.WRITE
        self.message = f"This API key lacks the '{ApiKeyScope(needed).value}' scope."
        return ApiKeyScope(needed).value in api_key.scopes
