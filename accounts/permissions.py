from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.roles import REVIEW_PERMISSION


class IsReviewer(BasePermission):
    """Reviewers and admins (through the reviewer permission their groups carry)."""

    message = "This endpoint is for reviewers."

    def has_permission(self, request: Request, view: object) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm(REVIEW_PERMISSION))
