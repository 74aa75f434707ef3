"""The OpenAI-compatible HTTP layer (/v1): parse OpenAI bodies, call `vision.chat`, answer in
OpenAI's shapes (chat.completion, chat.completion.chunk over SSE, error objects)."""
