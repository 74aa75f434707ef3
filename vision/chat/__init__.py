"""Chat completions as a service, under the /v1 HTTP layer (vision/openai) and the portal chat.

- `types`: the parsed request (what the OpenAI body means, nothing HTTP).
- `images`: image_url → bytes (data: URLs; http(s) through `fetch` when enabled) → stored Document.
- `fetch`: the SSRF-safe HTTP fetcher.
- `answer_cache`, `routing`, `admission`: Redis-backed policies.
- `completion`: prepare → submit → relay → finish; what a view calls.
"""
