"""Blocking model calls run from the event loop: admission control, worker threads, and
streams sent back as server-sent events.

Model calls block (llama.cpp decoding, HTTP to a provider), so each runs in a worker thread
and the event loop keeps answering other requests. ``anyio.to_thread.run_sync`` copies the
caller's ``contextvars`` into the thread, which carries the OpenTelemetry context: the model's
span nests under the request's server span.

Admission: at most ``max_concurrency`` requests generate at once and at most ``max_queue``
wait for a slot; one more gets 429 with ``Retry-After`` at once, before any work.

Streams pull the first chunk before the response starts, so an error raised at the start
(context too long, engine overloaded, unsupported parameter) still gets a proper status.
When the client goes away the stream stops, and the model's generator is closed — that is
how a backend (or the engine) learns to free the sequence.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Callable, Iterator

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import StreamingResponse

from ..core.types import Chunk, Completion
from .errors import QueueFull
from .metrics import Metrics

_END = object()


class Admission:
    """Counts requests generating and waiting; refuses the one that would overflow the queue."""

    def __init__(self, max_concurrency: int, max_queue: int, retry_after: float):
        self.max_concurrency, self.max_queue, self.retry_after = max_concurrency, max_queue, retry_after
        self.active = 0   # holding a slot
        self.waiting = 0  # queued for one
        self._slots: asyncio.Semaphore | None = None  # made in the server's loop, on first use

    async def acquire(self) -> None:
        """Take a slot, waiting in line if there is room in it; raise QueueFull if there is none."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrency)
        if self.active + self.waiting >= self.max_concurrency + self.max_queue:
            raise QueueFull(self.max_concurrency, self.max_queue, self.retry_after)
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:  # also when the client leaves while queued
            self.waiting -= 1
        self.active += 1

    def release(self) -> None:
        self.active -= 1
        self._slots.release()


class Runner:
    """Runs one model's calls for an app, under admission control, recording metrics.

    Args:
        admission: the app's admission counts.
        metrics: where token counts and latencies go.
    """

    def __init__(self, admission: Admission, metrics: Metrics):
        self.admission, self.metrics = admission, metrics
        # One worker thread per admitted request is all they ever use (calls are sequential
        # within a request), so this limit can never starve a stream that holds a model lock.
        self._limiter: anyio.CapacityLimiter | None = None

    async def thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in a worker thread, with the caller's context (the current span)."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.admission.max_concurrency)
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def side(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A call outside admission (token counting, embeddings, loading the embedder) in one of
        anyio's default worker threads, so it never takes a thread a generating request needs."""
        return await anyio.to_thread.run_sync(fn, *args)

    async def complete(self, calls: list[Callable[[], Completion]]) -> list[Completion]:
        """Run ``calls`` (one per choice) one after another in one slot; usage goes to the metrics."""
        await self.admission.acquire()
        try:
            out = []
            for call in calls:
                out.append(await self.thread(call))
                self.metrics.count_tokens(out[-1].usage)
            return out
        finally:
            self.admission.release()

    async def stream(self, request: Request, starts: list[Callable[[], Iterator[Chunk]]]) -> AsyncIterator[tuple[int, Chunk]]:
        """Open ``starts[0]()`` and pull its first chunk now (errors raise here, before any
        response); return an async iterator of ``(choice index, chunk)`` over every stream in turn.

        The returned iterator must be closed (``aclose``) when the response ends — the
        response class in ``app.py`` does it — so the slot is freed and the model's generator
        closed even when the client went away.
        """
        t0 = time.perf_counter()
        await self.admission.acquire()
        try:
            it = await self.thread(starts[0])  # model.stream(...) checks its arguments here
            first = await self.thread(next, it, _END)
        except BaseException:
            self.admission.release()
            raise
        return self._pump(request, starts, it, first, t0)

    async def _pump(self, request, starts, it, first, t0) -> AsyncIterator[tuple[int, Chunk]]:
        last = None
        feed = None
        try:
            for index in range(len(starts)):
                if index:
                    it = await self.thread(starts[index])
                    first = await self.thread(next, it, _END)
                chunk = first
                feed = _Feed(it) if first is not _END else None
                while chunk is not _END:
                    now = time.perf_counter()
                    if chunk.text or chunk.tool_calls:
                        if last is None:
                            self.metrics.ttft.observe(now - t0)
                        else:
                            self.metrics.itl.observe(now - last)
                        last = now
                    if chunk.usage is not None:
                        self.metrics.count_tokens(chunk.usage)
                    yield index, chunk
                    # Starlette also cancels us on disconnect; asking here covers servers that
                    # only report it when a write fails.
                    if await request.is_disconnected():
                        return
                    chunk = await feed.get()
                feed = None
        finally:
            with anyio.CancelScope(shield=True):  # runs even when the client's departure cancelled us
                if feed is not None:
                    await feed.stop()
                else:
                    await self.thread(it.close)
            self.admission.release()


class _Feed:
    """The rest of a model stream, read by one thread of its own and handed to the event loop.

    A thread hop per token (``to_thread.run_sync(next, it)``) costs more than the token's own
    work at 100+ tokens/s on two cores; one reader thread per stream, waking the loop with
    ``call_soon_threadsafe``, does not. The reader closes the model's generator itself (a
    generator can only be closed by the thread running it) once asked to stop.
    """

    def __init__(self, it: Iterator[Chunk]):
        import threading

        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.halt = threading.Event()
        self.done = asyncio.Event()
        self.thread = threading.Thread(target=self._read, args=(it,), name="llmkit-stream", daemon=True)
        self.thread.start()

    def _read(self, it: Iterator[Chunk]) -> None:
        try:
            for chunk in it:
                self.loop.call_soon_threadsafe(self.queue.put_nowait, chunk)
                if self.halt.is_set():
                    break
            else:
                self.loop.call_soon_threadsafe(self.queue.put_nowait, _END)
        except BaseException as e:  # surfaces in the response, as a failing next() would
            self.loop.call_soon_threadsafe(self.queue.put_nowait, e)
        finally:
            it.close()  # cancels the engine request if it is still running
            self.loop.call_soon_threadsafe(self.done.set)

    async def get(self) -> Any:
        item = await self.queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    async def stop(self) -> None:
        """Ask the reader to close the stream, and wait until it has (the slot frees after)."""
        self.halt.set()
        with anyio.move_on_after(10):  # a reader still waiting for a chunk closes the stream when it comes
            await self.done.wait()


def sse(data: Any, event: str | None = None) -> str:
    """One server-sent event: ``data`` is JSON-encoded unless it is already a string."""
    import json

    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"


class SSEResponse(StreamingResponse):
    """A ``text/event-stream`` response that always closes its event iterator when it ends,
    however it ends (finished, client gone, server shutting down), so the model stream
    inside it is closed and its slot freed at once rather than when garbage is collected."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[str]):
        # no-cache and no proxy buffering: each event must reach the client when it is made
        super().__init__(events, headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()
