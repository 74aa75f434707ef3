"""Documents: upload (201 new, 200 when this user already uploaded the same bytes), list, detail,
legal hold (PATCH, admins), delete (204; the files go from storage after the commit)."""

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.scope import scope_of
from vision.apis.common import Pagination, paginated_response, uploaded_file
from vision.models import ExtractionEventAction
from vision.selectors import document_get, document_list
from vision.services.audit import audit_record
from vision.services.documents import document_delete, document_set_legal_hold, document_upload


class DocumentOutputSerializer(serializers.Serializer):
    @extend_schema_serializer(component_name="DocumentPage")
    class PageSerializer(serializers.Serializer):
        number = serializers.IntegerField()
        width = serializers.IntegerField()
        height = serializers.IntegerField()

    id = serializers.IntegerField()
    original_name = serializers.CharField()
    content_type = serializers.CharField()
    kind = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()
    page_count = serializers.IntegerField()
    pages = PageSerializer(many=True, source="pages.all")
    legal_hold = serializers.BooleanField()  # retention never deletes it
    created_at = serializers.DateTimeField()


class DocumentListCreateApi(APIView):
    pagination_class = Pagination  # also tells the schema the list is paginated
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema_serializer(component_name="DocumentUploadInput")
    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(allow_empty_file=True)

    @extend_schema(responses=DocumentOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return paginated_response(
            self, request, document_list(scope=scope_of(request)), DocumentOutputSerializer
        )

    @extend_schema(
        request=InputSerializer, responses={201: DocumentOutputSerializer, 200: DocumentOutputSerializer}
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        upload = uploaded_file(serializer.validated_data["file"])
        result = document_upload(scope=scope_of(request), data=upload.data, filename=upload.name)
        return Response(
            DocumentOutputSerializer(result.document).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )


class DocumentDetailApi(APIView):
    @extend_schema(responses=DocumentOutputSerializer)
    def get(self, request: Request, document_id: int) -> Response:
        scope = scope_of(request)
        document = document_get(scope=scope, document_id=document_id)
        audit_record(scope=scope, action=ExtractionEventAction.VIEWED, document_id=document.pk)
        return Response(DocumentOutputSerializer(document).data)

    @extend_schema_serializer(component_name="DocumentUpdateInput")
    class UpdateSerializer(serializers.Serializer):
        legal_hold = serializers.BooleanField()

    @extend_schema(request=UpdateSerializer, responses=DocumentOutputSerializer)
    def patch(self, request: Request, document_id: int) -> Response:
        """Legal hold on or off (the organisation's admins only)."""
        scope = scope_of(request)
        document = document_get(scope=scope, document_id=document_id)  # 404 before the body is read
        serializer = self.UpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        document = document_set_legal_hold(
            scope=scope, document=document, hold=serializer.validated_data["legal_hold"]
        )
        return Response(DocumentOutputSerializer(document).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, document_id: int) -> Response:
        scope = scope_of(request)
        document_delete(document=document_get(scope=scope, document_id=document_id), actor=scope.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
