from django.urls import path

from vision.conversations import apis

urlpatterns = [
    path("", apis.ConversationListApi.as_view(), name="conversation-list"),
    path("<int:conversation_id>", apis.ConversationDetailApi.as_view(), name="conversation-detail"),
]
