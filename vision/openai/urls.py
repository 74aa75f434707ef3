from django.urls import path

from vision.openai import views

urlpatterns = [
    path("models", views.models_list, name="openai-models"),
    path("models/<path:model_id>", views.model_detail, name="openai-model"),
    path("chat/completions", views.chat_completions, name="openai-chat-completions"),
]
