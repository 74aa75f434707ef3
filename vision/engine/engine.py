"""The engine: one thread that owns the model and steps the scheduler; any thread may submit.

    engine = Engine(EngineConfig(model="/models/qwen3-vl-2b"))
    engine.start()                      # loads in the background; engine.status() tells how far
    handle = engine.submit(request)     # preprocessing happens here, in the caller's thread
    for delta in handle: print(delta.text, end="")
    engine.shutdown()

One process holds one model (docs/architecture.md): the Celery worker creates one Engine and its threads-pool
tasks share it, so concurrent requests batch together instead of each holding a model copy.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator

from .config import EngineConfig
from .contract import PixelBudget, SamplingDefaults
from .errors import EngineError, EngineNotReady, EngineOverloaded
from .grammar import GrammarCache
from .language_model import ModelRunner
from .model_calls import ModelCalls
from .preprocess import Preprocessor
from .sampling import Sampler, TextStream
from .scheduler import Scheduler, Sequence
from .types import (
    EngineRequest,
    EngineStatus,
    FinishReason,
    FormatVerdict,
    ImagePart,
    RequestOutput,
    StreamDelta,
    Timings,
    Usage,
)

log = logging.getLogger(__name__)


class RequestHandle:
    """The caller's side of one request: iterate for deltas, or wait for the whole output."""

    def __init__(self, engine: Engine, request_id: str):
        self._engine = engine
        self.request_id = request_id
        self._queue: queue.Queue[StreamDelta] = queue.Queue()
        self._final: StreamDelta | None = None
        self._text: list[str] = []
        self._tokens: list[int] = []

    def _put(self, delta: StreamDelta) -> None:
        self._queue.put(delta)

    def __iter__(self) -> Iterator[StreamDelta]:
        while self._final is None:
            yield self.next_delta()

    def next_delta(self, timeout: float | None = None) -> StreamDelta:
        """The next event; raises queue.Empty after `timeout` seconds without one."""
        if self._final is not None:
            return self._final
        delta = self._queue.get(timeout=timeout)
        self._text.append(delta.text)
        self._tokens.extend(delta.token_ids)
        if delta.finished:
            self._final = delta
        return delta

    @property
    def finished(self) -> bool:
        return self._final is not None

    @property
    def final_delta(self) -> StreamDelta | None:
        """The finishing event once it arrived: its text is the answer's last piece (the last
        token's, and any text held back while it could still start a stop string), its usage and
        timings the request's."""
        return self._final

    def cancel(self) -> None:
        self._engine.cancel(self.request_id)

    def result(self, timeout: float | None = None) -> RequestOutput:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._final is None:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            self.next_delta(timeout=left)
        final = self._final
        return RequestOutput(
            request_id=self.request_id,
            text="".join(self._text),
            token_ids=self._tokens,
            finish_reason=final.finish_reason,
            usage=final.usage or Usage(),
            timings=final.timings or Timings(),
            error=final.error,
        )


class Engine:
    def __init__(self, config: EngineConfig, *, loaded=None):
        """`loaded`: an already loaded model (tests and benchmarks share one across engines)."""
        self.config = config
        self._loaded = loaded
        self._state = "stopped"
        self._error: str | None = None
        self._formats: dict[str, str] = {}
        self._format_timings: dict = {}
        self._verdict: FormatVerdict | None = None
        self._load_s = 0.0
        self._threads = 0
        self._inbox: queue.Queue = queue.Queue()
        self._wake = threading.Event()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._scheduler: Scheduler | None = None
        self._models: ModelCalls | None = None  # runs each scheduled step on the two models
        self._pre: Preprocessor | None = None
        self._eos_ids: frozenset[int] = frozenset()
        self._sampling_defaults = SamplingDefaults()
        self._tokenizer = None
        self._grammars: GrammarCache | None = None
        self._pending_cancels: set[str] = set()
        self._lock = threading.Lock()
        # Requests accepted by submit(). Waiting = this minus the scheduler's left_waiting: two
        # monotonic counters, each written by one side, so no update is lost between threads.
        self._submitted = 0

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Load the model and run the step loop in a background thread; returns at once."""
        if self._thread is not None:
            return
        self._state = "loading"
        # This thread may have run torch's parallel ops (loaded the model it passes, or other
        # work): free its OpenMP pool, or libgomp, seeing more threads than CPUs, cuts the engine
        # thread's spin-waits short (kernels.release_thread_pool). A thread without one: no-op.
        # Only with the kernels already loaded: start() never compiles them in the caller's thread.
        from . import kernels

        kernels.release_thread_pool(build=False)
        self._thread = threading.Thread(target=self._main, name="vision-engine", daemon=True)
        self._thread.start()

    def load(self, timeout: float | None = None) -> Engine:
        """`start()` and wait until ready; raise EngineNotReady with the reason if loading failed."""
        self.start()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float | None = None) -> EngineStatus:
        self._ready.wait(timeout)
        status = self.status()
        if status.state != "ready":
            raise EngineNotReady(status.error or f"engine is {status.state}")
        return status

    def shutdown(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._state = "stopped" if self._state != "error" else "error"

    def status(self) -> EngineStatus:
        sched = self._scheduler
        return EngineStatus(
            state=self._state,
            model=self.config.model,
            formats=dict(self._formats),
            format_timings=dict(self._format_timings),
            format_verdict=self._verdict,
            error=self._error,
            threads=self._threads,
            running=len(sched.running) if sched else 0,
            waiting=self._waiting_count(),
            load_s=round(self._load_s, 2),
            prefix_cache=sched.prefix_cache.stats() if sched else {},
            vision_cache=sched.vision_cache.stats() if sched else {},
        )

    # -- requests -------------------------------------------------------------------------------
    def submit(self, request: EngineRequest) -> RequestHandle:
        """Validate and tokenize in the caller's thread, then queue for the engine thread.

        Raises InvalidRequest / RequestTooLong for bad input, EngineOverloaded when the queue is
        full and EngineNotReady before the model is loaded; nothing is queued in those cases.
        """
        if self._state != "ready" or self._pre is None:
            raise EngineNotReady(self._error or f"engine is {self._state}")
        params = request.sampling  # checked its own bounds when it was built (InvalidSampling)
        with self._lock:
            waiting = self._waiting_count()
            if waiting >= self.config.max_waiting:
                raise EngineOverloaded(f"{waiting} requests are already waiting")
            self._submitted += 1
        try:
            budget = request.pixels or PixelBudget.for_task(request.task)
            prompt = self._pre.prepare(request.messages, budget, self.config.max_prompt_tokens)
            # Compiled here, in the caller's thread (cached by the constraint's hash).
            grammar = self._grammars.state(request.constraint) if request.constraint else None
        except BaseException:
            with self._lock:
                self._submitted -= 1
            raise
        handle = RequestHandle(self, request.request_id)
        seq = Sequence(
            request=request,
            prompt=prompt,
            # Unset sampling fields get the checkpoint's generation_config.json values here, on the
            # engine side, so every caller of the engine sees the model's own defaults.
            sampler=Sampler(params, self._eos_ids, prompt.input_ids.tolist(), self._sampling_defaults),
            text=TextStream(self._tokenizer, params.stop),
            emit=handle._put,
            submitted_at=time.monotonic(),
            grammar=grammar,
        )
        self._inbox.put(seq)
        self._wake.set()
        return handle

    def generate(self, request: EngineRequest, timeout: float | None = None) -> RequestOutput:
        return self.submit(request).result(timeout)

    def cancel(self, request_id: str) -> None:
        """Stop a request at the next step boundary; its stream ends with finish_reason cancelled."""
        with self._lock:
            self._pending_cancels.add(request_id)
        self._wake.set()

    def image_tokens(self, image: ImagePart, budget: PixelBudget) -> int:
        """How many prompt tokens this image will cost under this budget (known before running)."""
        if self._pre is None:
            raise EngineNotReady("engine is not loaded")
        width, height = image.image.size
        return self._pre.image_tokens(width, height, budget)

    def _waiting_count(self) -> int:
        left = self._scheduler.left_waiting if self._scheduler else 0
        return self._submitted - left

    @property
    def steps(self) -> int:
        return self._scheduler.steps if self._scheduler else 0

    # -- engine thread --------------------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._load()
        except EngineError as exc:  # a clear, expected failure (missing folder, bad setting)
            log.error("engine failed to load %s: %s", self.config.model, exc)
            self._error = str(exc)
            self._state = "error"
            self._ready.set()
            return
        except Exception as exc:
            log.exception("engine failed to load %s", self.config.model)
            self._error = f"{type(exc).__name__}: {exc}"
            self._state = "error"
            self._ready.set()
            return
        self._state = "ready"
        self._ready.set()
        try:
            self._loop()
        finally:
            self._drain_on_exit()

    def _load(self) -> None:
        from . import startup

        start = time.monotonic()
        self._threads = startup.configure_threads(self.config.threads)
        loaded, formats, timings = startup.load_for_engine(self.config, self._loaded)
        self._formats, self._format_timings = formats, timings
        runner = ModelRunner(
            loaded.model,
            act_dtype=loaded.activation_dtype,
            kv_slots=self.config.max_batch_size,
            kv_slot_tokens=self.config.kv_slot_tokens,
        )
        if loaded.format_choice is not None:
            self._verdict = loaded.format_choice.verdict()
        self._tokenizer = loaded.tokenizer
        processor = loaded.processor
        self._pre = Preprocessor(loaded.tokenizer, processor.image_processor, processor.chat_template)
        self._eos_ids = frozenset(loaded.eos_token_ids)
        self._sampling_defaults = loaded.sampling_defaults
        self._scheduler = Scheduler(self.config, runner, self._eos_ids)
        self._models = ModelCalls(runner, loaded.model.model.visual, self._pre)
        vocab_size = loaded.model.lm_head.out_features  # logits width (quantized copies keep it)
        self._grammars = GrammarCache(loaded.tokenizer, vocab_size, self._eos_ids)
        self._load_s = time.monotonic() - start
        log.info(
            "engine ready: model=%s formats=%s threads=%d load=%.1fs timings=%s",
            self.config.model,
            formats,
            self._threads,
            self._load_s,
            timings,
        )

    def _take_inbox(self) -> int:
        taken = 0
        while True:
            try:
                seq = self._inbox.get_nowait()
            except queue.Empty:
                return taken
            self._scheduler.add_request(seq)
            taken += 1

    def _loop(self) -> None:
        sched = self._scheduler
        while not self._stop.is_set():
            arrived = self._take_inbox()
            if arrived and not sched.running and self.config.arrival_wait_s > 0:
                # Idle engine, new work: a moment's wait lets a burst start as one batch.
                time.sleep(self.config.arrival_wait_s)
                self._take_inbox()
            with self._lock:
                cancels, self._pending_cancels = self._pending_cancels, set()
            for request_id in cancels:
                sched.abort(request_id, FinishReason.CANCELLED)
            sched.expire(time.monotonic())
            if not sched.has_work:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            out = sched.schedule()
            if out.empty:
                continue
            self._models.step(sched, out)

    def _drain_on_exit(self) -> None:
        if self._scheduler is not None:
            self._take_inbox()
            self._scheduler.shutdown()
