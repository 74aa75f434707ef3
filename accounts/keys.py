"""Format and hashing of personal API keys."""

import hashlib
import secrets

# Recognisable in logs and secret scanners, and lets the authenticator tell keys from JWTs.
API_KEY_PREFIX = "dp_"
# Characters of the raw key kept in clear for listing: the "dp_" marker plus 8 random ones.
VISIBLE_PREFIX_LENGTH = len(API_KEY_PREFIX) + 8


def api_key_generate() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)  # 256 bits of randomness


def api_key_hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()
