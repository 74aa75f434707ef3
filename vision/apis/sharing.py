"""Share links of a document: create (201; the URL, which holds the link's secret, is in this
response only), list (no URL, no secret), revoke (204). Another organisation's document or link
is 404."""

from datetime import timedelta

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.scope import scope_of
from vision.apis.common import Pagination, paginated_response
from vision.selectors import document_get, share_link_list
from vision.services.sharing import share_link_create, share_link_revoke


class ShareLinkOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    document = serializers.IntegerField(source="document_id")
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    include_extraction = serializers.BooleanField()
    expires_at = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True)
    open_count = serializers.IntegerField()
    last_opened_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="ShareLinkCreated")
class ShareLinkCreatedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.URLField()  # shown once: it holds the link's secret
    expires_at = serializers.DateTimeField()
    include_extraction = serializers.BooleanField()


def share_url(request, token: str) -> str:
    """The absolute URL of the public page a token opens."""
    return request.build_absolute_uri(reverse("share-page", kwargs={"token": token}))


class DocumentShareLinkListCreateApi(APIView):
    pagination_class = Pagination

    @extend_schema_serializer(component_name="ShareLinkCreateInput")
    class InputSerializer(serializers.Serializer):
        expires_in_days = serializers.IntegerField(min_value=1, required=False)
        include_extraction = serializers.BooleanField(required=False, default=False)

        def validate_expires_in_days(self, value: int) -> int:
            if value > settings.SHARE_LINK_MAX_DAYS:
                raise serializers.ValidationError(f"At most {settings.SHARE_LINK_MAX_DAYS} days.")
            return value

    @extend_schema(responses=ShareLinkOutputSerializer(many=True))
    def get(self, request: Request, document_id: int) -> Response:
        scope = scope_of(request)
        document = document_get(scope=scope, document_id=document_id)
        return paginated_response(
            self, request, share_link_list(scope=scope, document=document), ShareLinkOutputSerializer
        )

    @extend_schema(request=InputSerializer, responses={201: ShareLinkCreatedSerializer})
    def post(self, request: Request, document_id: int) -> Response:
        scope = scope_of(request)
        document = document_get(scope=scope, document_id=document_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        days = serializer.validated_data.get("expires_in_days")
        link, token = share_link_create(
            scope=scope,
            document=document,
            expires_in=timedelta(days=days) if days is not None else None,
            include_extraction=serializer.validated_data["include_extraction"],
        )
        body = {
            "id": link.pk,
            "url": share_url(request, token),
            "expires_at": link.expires_at,
            "include_extraction": link.include_extraction,
        }
        response = Response(ShareLinkCreatedSerializer(body).data, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response


class ShareLinkDetailApi(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, link_id: int) -> Response:
        share_link_revoke(scope=scope_of(request), link_id=link_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
