"""Chat completions as a service, under the /v1 HTTP layer (vision/openai) and the portal chat.

- `service`: `chat_complete` and `chat_stream`, the one call a view makes.

- `types`: the parsed request (what the OpenAI body means, nothing HTTP).
- `images`: image_url → bytes (data: URLs; http(s) through `fetch` when enabled) → stored Document.
- `fetch`: the SSRF-safe HTTP fetcher.
- `answer_cache`, `routing`, `admission`: Redis-backed policies.
- `completion`: the steps behind the service: prepare → (answer cache) → submit → relay → finish.
- `json_output`: the instruction a `response_format` or guided choice adds to the prompt (validity
  comes from the constraint the engine generates under, not from a check afterwards).
"""
