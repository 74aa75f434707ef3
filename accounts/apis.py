"""Account APIs: JWT obtain/refresh/logout, `me`, organisations and their members, API keys with
scopes, /v1 usage, and the reviewer check.

Each API parses input, calls one service or selector and serializes the result.
"""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from accounts.lockout import (
    client_ip,
    lockout_message,
    login_failure_record,
    login_failures_reset,
    login_lock_remaining,
)
from accounts.models import ApiKeyScope
from accounts.permissions import ApiKeyScopes, IsReviewer
from accounts.roles import ROLE_ORDER, Role
from accounts.scope import scope_of
from accounts.selectors import api_key_list, api_usage_list, membership_list, organization_list
from accounts.services import (
    api_key_create,
    api_key_revoke,
    membership_add,
    membership_remove,
    membership_set_role,
    organization_create,
    organization_switch,
)
from docplatform.errors import RetryLater, ValidationFailed


class TokenObtainApi(TokenObtainPairView):
    """Username + password → access and refresh JWTs, behind the failed-login lockout."""

    def post(self, request: Request, *args, **kwargs) -> Response:
        username = str(request.data.get("username", ""))
        ip = client_ip(request)
        remaining = login_lock_remaining(username=username, ip=ip)
        if remaining:
            raise RetryLater(lockout_message(remaining), retry_after=remaining)
        try:
            response = super().post(request, *args, **kwargs)
        except AuthenticationFailed:
            locked_for = login_failure_record(username=username, ip=ip)
            if locked_for:
                raise RetryLater(lockout_message(locked_for), retry_after=locked_for) from None
            raise
        login_failures_reset(username=username, ip=ip)
        return response


class TokenRefreshApi(TokenRefreshView):
    """Refresh → new access and a new refresh token; the old refresh token is blacklisted."""


class LogoutApi(APIView):
    """Blacklist a refresh token. Holding the token is the proof, so no access token is needed
    (it may have expired already)."""

    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        refresh = serializers.CharField()

    @extend_schema(request=InputSerializer, responses={205: None})
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            RefreshToken(serializer.validated_data["refresh"]).blacklist()
        except TokenError as exc:
            raise ValidationFailed(f"Invalid refresh token: {exc}") from None
        return Response(status=status.HTTP_205_RESET_CONTENT)


class MeApi(APIView):
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        username = serializers.CharField()
        email = serializers.CharField()  # may be blank: not format "email" in the schema
        roles = serializers.ListField(child=serializers.CharField(), help_text="Site roles (the admin site).")
        is_staff = serializers.BooleanField()
        organization = serializers.CharField(help_text="Slug of the organisation this request acts in.")
        role = serializers.CharField(help_text="The caller's role in that organisation.")

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        scope = scope_of(request)
        user = request.user
        data = {
            "id": user.pk,
            "username": user.username,
            "email": user.email,
            "roles": user.roles,
            "is_staff": user.is_staff,
            "organization": scope.organization.slug,
            "role": scope.role.value,
        }
        return Response(self.OutputSerializer(data).data)


class OrganizationOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    slug = serializers.CharField()
    personal = serializers.BooleanField()


class OrganizationListCreateApi(APIView):
    """The caller's organisations; POST makes a team organisation with the caller as its admin."""

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100)

    @extend_schema(responses=OrganizationOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(
            OrganizationOutputSerializer(organization_list(scope=scope_of(request)), many=True).data
        )

    @extend_schema(request=InputSerializer, responses={201: OrganizationOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        organization = organization_create(user=request.user, name=serializer.validated_data["name"])
        return Response(OrganizationOutputSerializer(organization).data, status=status.HTTP_201_CREATED)


class OrganizationSwitchApi(APIView):
    """Make an organisation the one the caller's JWT and portal requests act in."""

    @extend_schema(request=None, responses=OrganizationOutputSerializer)
    def post(self, request: Request, organization_id: int) -> Response:
        organization = organization_switch(user=request.user, organization_id=organization_id)
        return Response(OrganizationOutputSerializer(organization).data)


class MemberOutputSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField(source="user.username")
    role = serializers.CharField()


class MemberListCreateApi(APIView):
    """Members of the request's organisation; adding needs its admin role."""

    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        role = serializers.ChoiceField(choices=[r.value for r in ROLE_ORDER], default=Role.MEMBER.value)

    @extend_schema(responses=MemberOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(MemberOutputSerializer(membership_list(scope=scope_of(request)), many=True).data)

    @extend_schema(request=InputSerializer, responses={201: MemberOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = membership_add(
            scope=scope_of(request),
            username=serializer.validated_data["username"],
            role=Role(serializer.validated_data["role"]),
        )
        return Response(MemberOutputSerializer(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailApi(APIView):
    required_key_scope = ApiKeyScope.ADMIN

    class InputSerializer(serializers.Serializer):
        role = serializers.ChoiceField(choices=[r.value for r in ROLE_ORDER])

    @extend_schema(request=InputSerializer, responses=MemberOutputSerializer)
    def patch(self, request: Request, user_id: int) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = membership_set_role(
            scope=scope_of(request), user_id=user_id, role=Role(serializer.validated_data["role"])
        )
        return Response(MemberOutputSerializer(membership).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, user_id: int) -> Response:
        membership_remove(scope=scope_of(request), user_id=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApiKeyOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField()
    scopes = serializers.ListField(child=serializers.CharField())
    expires_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)


class ApiKeyListCreateApi(APIView):
    permission_classes = [IsAuthenticated, ApiKeyScopes]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100)
        scopes = serializers.ListField(
            child=serializers.ChoiceField(choices=ApiKeyScope.values),
            required=False,
            help_text="Default: read and write. review and admin need that role in the organisation.",
        )
        expires_at = serializers.DateTimeField(required=False, allow_null=True)

    class CreatedSerializer(ApiKeyOutputSerializer):
        key = serializers.CharField(help_text="The raw key. Shown only in this response.")

    @extend_schema(responses=ApiKeyOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(ApiKeyOutputSerializer(api_key_list(scope=scope_of(request)), many=True).data)

    @extend_schema(request=InputSerializer, responses={201: CreatedSerializer})
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        created = api_key_create(
            scope=scope_of(request),
            name=serializer.validated_data["name"],
            scopes=serializer.validated_data.get("scopes"),
            expires_at=serializer.validated_data.get("expires_at"),
        )
        data = {**ApiKeyOutputSerializer(created.api_key).data, "key": created.raw_key}
        return Response(self.CreatedSerializer(data).data, status=status.HTTP_201_CREATED)


class ApiKeyRevokeApi(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, key_id: int) -> Response:
        api_key_revoke(scope=scope_of(request), key_id=key_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class UsageApi(APIView):
    """/v1 use of the request's organisation per key and day (the caller's keys; every key for
    its admins), the last 30 days."""

    class OutputSerializer(serializers.Serializer):
        day = serializers.DateField()
        api_key = serializers.CharField(source="api_key.prefix", allow_null=True, default=None)
        requests = serializers.IntegerField()
        prompt_tokens = serializers.IntegerField()
        completion_tokens = serializers.IntegerField()

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(self.OutputSerializer(api_usage_list(scope=scope_of(request)), many=True).data)


class ReviewPingApi(APIView):
    """Reviewer-only liveness check; the review API grows next to it."""

    permission_classes = [IsReviewer]

    @extend_schema(responses={200: None})
    def get(self, request: Request) -> Response:
        return Response({"ok": True, "reviewer": request.user.username})
