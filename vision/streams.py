"""Token streams between workers and the web side, over Redis Streams.

A worker appends one entry per text delta to `docplatform:gen:<id>:events`, and a last entry of
type "final" with usage, timings and finish reason. Streams, not pub/sub: a reader that connects
late (or reconnects) still reads every entry from the start, and entries outlive a reader's blip.
Each stream expires an hour after its last write. A reader that wants the generation stopped
(client disconnected, job cancelled) sets `docplatform:gen:<id>:cancel`; the worker polls it.

Used by the web process (async reads, redis.asyncio) and by workers (sync writes). No torch.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

STREAM_TTL_S = 3600
# A web-side reader holds a lease while it relays a generation; a worker whose generation had a
# reader and lost it stops generating. This catches disconnects that never run the reader's own
# cleanup (an abandoned async generator is only finalized at garbage collection, or the web process
# died), at the cost of one SET per second per stream. Long enough that a slow client's send
# backpressure does not look like a disconnect.
READER_LEASE_S = 10
STREAM_MAXLEN = 20_000  # entries; a 16k-token answer fits, a runaway cannot eat Redis


def stream_key(request_id: str) -> str:
    return f"docplatform:gen:{request_id}:events"


def cancel_key(request_id: str) -> str:
    return f"docplatform:gen:{request_id}:cancel"


def reader_key(request_id: str) -> str:
    return f"docplatform:gen:{request_id}:reader"


def claim_key(request_id: str) -> str:
    """`<worker hostname>|<pid>` of the process generating the request (vision/inference.py)."""
    return f"docplatform:gen:{request_id}:claim"


@dataclass
class StreamEvent:
    id: str  # Redis stream entry id, to resume reading after it
    type: str  # "started" | "delta" | "final"
    text: str = ""
    data: dict = field(default_factory=dict)  # "started": {"worker"}; "final": output fields

    @property
    def final(self) -> bool:
        return self.type == "final"


def _decode(entry_id, fields: dict) -> StreamEvent:
    def s(value) -> str:
        return value.decode() if isinstance(value, bytes) else value

    fields = {s(k): s(v) for k, v in fields.items()}
    data = json.loads(fields["data"]) if fields.get("data") else {}
    return StreamEvent(id=s(entry_id), type=fields["type"], text=fields.get("text", ""), data=data)


def publish(client, request_id: str, type_: str, *, text: str = "", data: dict | None = None) -> None:
    """Append an event (worker side, sync client)."""
    key = stream_key(request_id)
    fields = {"type": type_, "text": text}
    if data is not None:
        fields["data"] = json.dumps(data, ensure_ascii=False)
    pipe = client.pipeline(transaction=False)
    pipe.xadd(key, fields, maxlen=STREAM_MAXLEN, approximate=True)
    pipe.expire(key, STREAM_TTL_S)
    pipe.execute()


class BestEffortPublisher:
    """`publish` for streams nobody depends on (an async job's progress and tokens: the stored
    result is what counts). A failed publish is retried `retries` times, a few tens of ms apart,
    then dropped; after a drop, publishes are skipped for `pause_s` so a Redis outage costs the
    generation one wait, not one per token. Never raises; `dropped` counts what was lost."""

    def __init__(self, client, request_id: str, *, retries: int = 2, pause_s: float = 2.0) -> None:
        self.client = client
        self.request_id = request_id
        self.retries = retries
        self.pause_s = pause_s
        self.dropped = 0
        self._paused_until = 0.0

    def publish(self, type_: str, *, text: str = "", data: dict | None = None) -> bool:
        """True when the event reached the stream."""
        import redis

        if time.monotonic() < self._paused_until and type_ != "final":
            self.dropped += 1
            return False
        for attempt in range(self.retries + 1):
            try:
                publish(self.client, self.request_id, type_, text=text, data=data)
                return True
            except (redis.RedisError, OSError) as exc:
                if attempt == self.retries:
                    self.dropped += 1
                    self._paused_until = time.monotonic() + self.pause_s
                    logger.warning(
                        "stream %s: %s event dropped (%s); the job goes on", self.request_id, type_, exc
                    )
                    return False
                time.sleep(0.05 * (attempt + 1))
        return False


def request_cancel(client, request_id: str) -> None:
    client.set(cancel_key(request_id), "1", ex=STREAM_TTL_S)


def cancel_requested(client, request_id: str) -> bool:
    return bool(client.exists(cancel_key(request_id)))


def read_all(client, request_id: str) -> list[StreamEvent]:
    """Every event so far (sync; tests and job status pages)."""
    return [_decode(i, f) for i, f in client.xrange(stream_key(request_id))]


async def aread(aclient, request_id: str, after: str = "0-0", block_ms: int = 1000) -> list[StreamEvent]:
    """Events after entry `after`, waiting up to `block_ms` for the first (web side, async client)."""
    response = await aclient.xread({stream_key(request_id): after}, block=block_ms, count=256)
    events = []
    for _key, entries in response or []:
        events.extend(_decode(i, f) for i, f in entries)
    return events


def reader_status(client, request_id: str) -> tuple[bool, bool]:
    """(cancel requested, a reader's lease is live): one round trip, for the worker's poll."""
    pipe = client.pipeline(transaction=False)
    pipe.exists(cancel_key(request_id))
    pipe.exists(reader_key(request_id))
    cancelled, reading = pipe.execute()
    return bool(cancelled), bool(reading)


async def atouch_reader(aclient, request_id: str) -> None:
    await aclient.set(reader_key(request_id), "1", ex=READER_LEASE_S)


async def arequest_cancel(aclient, request_id: str) -> None:
    await aclient.set(cancel_key(request_id), "1", ex=STREAM_TTL_S)
