"""`/api/conversations`: the chats a user had through /v1 or the portal (selectors, APIs, URLs)."""
