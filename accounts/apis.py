"""Account APIs: JWT obtain/refresh/logout, `me`, personal API keys, and the reviewer check.

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
from accounts.permissions import IsReviewer
from accounts.selectors import api_key_list
from accounts.services import api_key_create, api_key_revoke
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
        roles = serializers.ListField(child=serializers.CharField())
        is_staff = serializers.BooleanField()

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        return Response(self.OutputSerializer(request.user).data)


class ApiKeyOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField()
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)


class ApiKeyListCreateApi(APIView):
    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100)

    class CreatedSerializer(ApiKeyOutputSerializer):
        key = serializers.CharField(help_text="The raw key. Shown only in this response.")

    @extend_schema(responses=ApiKeyOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(ApiKeyOutputSerializer(api_key_list(user=request.user), many=True).data)

    @extend_schema(request=InputSerializer, responses={201: CreatedSerializer})
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        created = api_key_create(user=request.user, name=serializer.validated_data["name"])
        data = {**ApiKeyOutputSerializer(created.api_key).data, "key": created.raw_key}
        return Response(self.CreatedSerializer(data).data, status=status.HTTP_201_CREATED)


class ApiKeyRevokeApi(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, key_id: int) -> Response:
        api_key_revoke(user=request.user, key_id=key_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ReviewPingApi(APIView):
    """Reviewer-only liveness check; the review API grows next to it."""

    permission_classes = [IsReviewer]

    @extend_schema(responses={200: None})
    def get(self, request: Request) -> Response:
        return Response({"ok": True, "reviewer": request.user.username})
