"""Document types: members read their organisation's types and the site-wide ones; only the
organisation's admins define and change its own (site-wide types are made in the Django admin).

A change of `schema` or `instruction` makes a new version (`version` goes up by one); the older
versions stay readable, and the extractions made with them keep pointing at them.
"""

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.scope import scope_of
from vision.apis.common import Pagination, paginated_response
from vision.models import DocumentType
from vision.selectors import (
    document_type_get,
    document_type_list,
    document_type_version_get,
    document_type_versions,
)
from vision.services.document_types import document_type_create, document_type_update


class DocumentTypeOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    slug = serializers.SlugField()
    schema = serializers.JSONField()
    instruction = serializers.CharField()
    version = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class DocumentTypeVersionOutputSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    schema = serializers.JSONField()
    instruction = serializers.CharField()
    created_at = serializers.DateTimeField()


class DocumentTypeListCreateApi(APIView):
    pagination_class = Pagination

    @extend_schema_serializer(component_name="DocumentTypeCreateInput")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100)
        slug = serializers.SlugField(max_length=50)
        schema = serializers.JSONField()
        instruction = serializers.CharField(required=False, allow_blank=True, default="")

    @extend_schema(responses=DocumentTypeOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return paginated_response(
            self, request, document_type_list(scope=scope_of(request)), DocumentTypeOutputSerializer
        )

    @extend_schema(request=InputSerializer, responses={201: DocumentTypeOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        document_type = document_type_create(scope=scope_of(request), **serializer.validated_data)
        return Response(DocumentTypeOutputSerializer(document_type).data, status=status.HTTP_201_CREATED)


class DocumentTypeDetailUpdateApi(APIView):
    @extend_schema_serializer(component_name="DocumentTypeDetail")
    class OutputSerializer(DocumentTypeOutputSerializer):
        versions = serializers.SerializerMethodField()

        def get_versions(self, document_type: DocumentType) -> list[int]:
            return [v.number for v in document_type_versions(document_type=document_type)]

    @extend_schema_serializer(component_name="DocumentTypeUpdateInput")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100, required=False)
        schema = serializers.JSONField(required=False)
        instruction = serializers.CharField(required=False, allow_blank=True)

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request, slug: str) -> Response:
        return Response(self.OutputSerializer(document_type_get(scope=scope_of(request), slug=slug)).data)

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def patch(self, request: Request, slug: str) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        document_type = document_type_update(
            document_type=document_type_get(scope=scope_of(request), slug=slug),
            scope=scope_of(request),
            **serializer.validated_data,
        )
        return Response(self.OutputSerializer(document_type).data)


class DocumentTypeVersionDetailApi(APIView):
    @extend_schema(responses=DocumentTypeVersionOutputSerializer)
    def get(self, request: Request, slug: str, number: int) -> Response:
        version = document_type_version_get(scope=scope_of(request), slug=slug, number=number)
        return Response(DocumentTypeVersionOutputSerializer(version).data)
