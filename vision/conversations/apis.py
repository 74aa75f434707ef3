"""`/api/conversations`: list, read (with messages) and delete the caller's conversations."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.scope import scope_of
from vision.apis.common import Pagination, paginated_response
from vision.conversations.selectors import conversation_get, conversation_list, conversation_messages
from vision.services.conversations import conversation_delete


class ConversationOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    model = serializers.CharField()
    message_count = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class _ImageSerializer(serializers.Serializer):
    document_id = serializers.IntegerField(source="pk")
    original_name = serializers.CharField()
    sha256 = serializers.CharField()


class MessageOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    position = serializers.IntegerField()
    role = serializers.CharField()
    text = serializers.CharField()
    images = _ImageSerializer(many=True, source="images.all")
    finish_reason = serializers.CharField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cached_tokens = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class ConversationDetailSerializer(ConversationOutputSerializer):
    messages = serializers.SerializerMethodField()

    @extend_schema(responses=MessageOutputSerializer(many=True))
    def get_messages(self, conversation) -> list[dict]:
        return MessageOutputSerializer(conversation_messages(conversation=conversation), many=True).data


class ConversationListApi(APIView):
    pagination_class = Pagination  # also tells the schema the list is paginated

    @extend_schema(responses=ConversationOutputSerializer(many=True), operation_id="conversations_list")
    def get(self, request: Request) -> Response:
        conversations = conversation_list(scope=scope_of(request))
        return paginated_response(self, request, conversations, ConversationOutputSerializer)


class ConversationDetailApi(APIView):
    @extend_schema(responses=ConversationDetailSerializer, operation_id="conversations_retrieve")
    def get(self, request: Request, conversation_id: int) -> Response:
        conversation = conversation_get(scope=scope_of(request), conversation_id=conversation_id)
        return Response(ConversationDetailSerializer(conversation).data)

    @extend_schema(responses={204: None}, operation_id="conversations_destroy")
    def delete(self, request: Request, conversation_id: int) -> Response:
        conversation_delete(
            conversation=conversation_get(scope=scope_of(request), conversation_id=conversation_id)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
