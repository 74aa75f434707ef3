"""Chat: attach an image (📷), ask, and watch the answer stream in.

The page speaks the OpenAI chat completions protocol (`stream: true`) to `chat_stream` below,
which runs the same chat service call (`vision.chat.service.chat_stream`) and SSE relay
(`vision.openai.sse`) as `/v1/chat/completions`. Like any OpenAI client
the page resends the conversation each turn; the platform finds the stored Conversation by its
opening messages (vision/chat/routing.py). A portal chat therefore opens with a system message
carrying a random chat id: two chats that start with the same question stay two conversations,
and the history the page reloads from the database resends the same opening.
"""

import logging
import secrets

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from accounts.scope import scope_for, scope_of
from docplatform.aio import pooled_sync_to_async
from docplatform.errors import ApplicationError
from vision.chat import service
from vision.conversations.selectors import conversation_get, conversation_list, conversation_messages
from vision.openai.errors import QUEUE_ERRORS, OpenAIError, error_response, queue_unavailable
from vision.openai.parsing import decode_body, parse_chat_request, read_body_bounded
from vision.openai.sse import chat_sse_response
from vision.portal.views import found_or_404

logger = logging.getLogger(__name__)

CONVERSATION_HEADER = "X-DocPlatform-Conversation"

SIDEBAR_LENGTH = 50
SYSTEM_PROMPT = (
    "You are the DocPlatform assistant. Answer questions about the user's images and documents "
    "clearly and concisely. (portal chat {chat_id})"
)


@login_required
def chat(request: HttpRequest, conversation_id: int | None = None) -> HttpResponse:
    conversation, history = None, []
    if conversation_id is not None:
        conversation = found_or_404(
            conversation_get, scope=scope_of(request), conversation_id=conversation_id
        )
        history = [
            {"role": m.role, "text": m.text, "images": [image.pk for image in m.images.all()]}
            for m in conversation_messages(conversation=conversation)
        ]
    if not history:
        # A new chat. One started elsewhere (an SDK client) keeps its own opening: resent as is.
        opening = SYSTEM_PROMPT.format(chat_id=secrets.token_hex(8))
        history = [{"role": "system", "text": opening, "images": []}]
    return render(
        request,
        "portal/chat.html",
        {
            "conversation": conversation,
            "conversations": conversation_list(scope=scope_of(request))[:SIDEBAR_LENGTH],
            "history": history,
            "model": settings.OPENAI_MODEL_ALIAS,
            "max_image_bytes": settings.OPENAI_MAX_IMAGE_BYTES,
        },
    )


@require_POST
async def chat_stream(request: HttpRequest) -> HttpResponse:
    """The chat page's endpoint: the body and the SSE answer of `POST /v1/chat/completions`
    (`stream: true`), for the logged-in session user with Django's CSRF check.

    /v1 itself cannot serve the page: its session authentication runs DRF's CSRF check on a DRF
    request without parsers, which fails on a JSON body (UnsupportedMediaType, answered as 500).
    The answer is produced by the same chat service call and the same SSE relay as /v1. The
    stored conversation's id comes back in a header, so the page can link to it."""
    user = await request.auser()
    if not user.is_authenticated:
        return error_response(OpenAIError(401, "Log in first.", code="not_authenticated"))
    try:
        scope = await pooled_sync_to_async(scope_for)(user)
        body = decode_body(read_body_bounded(request))
        stream = await service.chat_stream(scope=scope, request=parse_chat_request(body))
    except (OpenAIError, ApplicationError) as exc:
        return error_response(exc)
    except QUEUE_ERRORS as exc:
        logger.warning("portal chat: queue unavailable: %s", exc)
        return error_response(queue_unavailable())
    response = chat_sse_response(stream, request)
    response[CONVERSATION_HEADER] = str(stream.prepared.conversation_pk or "")
    return response
