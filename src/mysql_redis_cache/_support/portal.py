"""Blocking calls answered by one private event loop in a daemon thread.

Every thread hands its calls to the same loop, so they share one set of connections and
their reads coalesce into shared round trips, as concurrent async callers' do. A hand-off
costs a deque append, one wake-up of the loop per batch of calls (not per call), an
eagerly started task, and a put on the caller's own queue.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import queue
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from .._errors import ClientClosedError, EventLoopError

logger = logging.getLogger("mysql_redis_cache")

_running_loop = asyncio._get_running_loop
# wraps a plain function as an async one that runs it in the calling thread
type Here = Callable[[Callable[[], Any]], Callable[[], Awaitable[Any]]]
_DONE, _RAISED, _RUN = range(3)


class _Call:
    """One blocking call: what to run in the loop, and where its caller waits."""

    __slots__ = ("abandoned", "lock", "mailbox", "make", "task")

    def __init__(self, make: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        self.make = make
        self.mailbox: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        self.task: asyncio.Task[Any] | None = None
        self.abandoned = False  # its caller left (interrupted): it runs nothing more for it
        self.lock: threading.Lock | None = None  # made when the call runs code in its caller


class _Runner:
    """One loop and its thread, from start to stop."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.calls: collections.deque[_Call] = collections.deque()
        self.woken = False  # a drain is scheduled: calls appended now are taken by it
        self.stopped = False
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), name=name, daemon=True)
        self.thread.start()
        started.wait()

    def _run(self, started: threading.Event) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        try:
            loop.run_forever()
            # from here no call starts: ones that come in are turned away (a task started
            # now would outlive the loop, and its caller would wait for ever)
            self.stopped = True
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            # the cleanups those cancellations started (shielded socket closes): finished,
            # not cancelled, else their sockets outlive the loop
            loop.run_until_complete(_settled(loop))
            # closes what each client opened in this loop (see loopbound.py)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(_settled(loop))
        finally:
            self.stopped = True
            self._turn_away()
            loop.close()

    def submit(self, call: _Call) -> None:
        """Queue `call` for the loop (its caller then waits on its mailbox)."""
        self.calls.append(call)
        if self.stopped:  # stopping: unless the last drain took it, it is turned away here
            self._withdraw(call)
            return
        if not self.woken:
            self.woken = True
            try:
                self.loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop closed meanwhile
                self._withdraw(call)

    def _withdraw(self, call: _Call) -> None:
        try:
            self.calls.remove(call)
        except ValueError:
            return  # taken: its outcome comes from the loop
        call.mailbox.put((_RAISED, ClientClosedError("the client is closed")))

    def _turn_away(self) -> None:
        while self.calls:
            self.calls.popleft().mailbox.put((_RAISED, ClientClosedError("the client is closed")))

    def _drain(self) -> None:
        self.woken = False  # before taking: a call appended from now on wakes us again
        if self.stopped:
            self._turn_away()
            return
        calls = self.calls
        while calls:
            call = calls.popleft()
            try:
                task = asyncio.Task(call.make(), loop=self.loop, eager_start=True)
            except BaseException as exc:  # a coroutine that could not start
                call.mailbox.put((_RAISED, exc))
                continue
            call.task = task
            if task.done():
                _settle(call, task)
            else:
                task.add_done_callback(functools.partial(_settle, call))

    def stop(self, wait: float) -> None:
        """Stop the loop (its tasks cancelled, its async generators finalized) and wait up
        to `wait` seconds for its thread to end."""
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:
            return  # closed already
        if threading.current_thread() is not self.thread:
            self.thread.join(wait)


async def _settled(loop: asyncio.AbstractEventLoop, wait: float = 2.0) -> None:
    """Let the loop's other tasks finish (up to `wait` seconds), then cancel what is left."""
    current = asyncio.current_task()
    for _ in range(10):
        others = [task for task in asyncio.all_tasks(loop) if task is not current]
        if not others:
            return
        _, late = await asyncio.wait(others, timeout=wait)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)


def _settle(call: _Call, task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        call.mailbox.put((_RAISED, ClientClosedError("the client was closed while this call ran")))
    elif (exc := task.exception()) is not None:
        call.mailbox.put((_RAISED, exc))
    else:
        call.mailbox.put((_DONE, task.result()))


class Portal:
    """Blocking calls into one private event loop, started on first use, from any thread.

    `name` names the loop's thread. Never keeps the process alive (a daemon thread).
    """

    def __init__(self, name: str, refusal: str) -> None:
        self._name = name
        self._refusal = refusal  # what EventLoopError says: which async class to use
        self._lock = threading.Lock()
        self._runner: _Runner | None = None

    def _started(self) -> _Runner:
        with self._lock:
            if self._runner is None:
                self._runner = _Runner(self._name)
            return self._runner

    def check(self) -> None:
        """Refuse a blocking call from a thread that runs an event loop (it would block
        that loop, or wait on itself)."""
        if _running_loop() is not None:
            raise EventLoopError(self._refusal)

    def call(self, make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """Run the coroutine `make()` returns in the loop; its result, or its exception.

        Raises:
            EventLoopError: called from a thread that runs an event loop.
            ClientClosedError: the loop stopped before the call ran, or while it ran.
        """
        self.check()
        call = _Call(make)
        runner = self._runner or self._started()
        runner.submit(call)
        return _wait(call, runner.loop)

    def call_with(
        self,
        make: Callable[[Here], Coroutine[Any, Any, Any]],
    ) -> Any:
        """As `call`, where `make(here)` may wrap a plain function with `here(fn)`: an
        async function the loop awaits, that runs `fn()` in this (the calling) thread."""
        self.check()
        runner = self._runner or self._started()
        loop = runner.loop
        call = _Call(lambda: make(functools.partial(_in_caller, call, loop)))
        call.lock = threading.Lock()
        runner.submit(call)
        return _wait(call, loop)

    def run_and_stop(self, make: Callable[[], Coroutine[Any, Any, Any]], wait: float) -> None:
        """Run `make()` in the loop (if it runs), then stop it: `wait` seconds at most."""
        runner = self._runner
        if runner is None:
            return
        self.check()
        future = asyncio.run_coroutine_threadsafe(make(), runner.loop)
        try:
            future.result(wait)
        except TimeoutError:
            logger.warning("closing took longer than %.3g s; stopping its event loop", wait)
        except Exception as exc:
            logger.debug("closing failed: %r", exc)
        finally:
            with self._lock:
                if self._runner is runner:
                    self._runner = None
            runner.stop(wait)


def _in_caller(
    call: _Call, loop: asyncio.AbstractEventLoop, fn: Callable[[], Any]
) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        future: asyncio.Future[Any] = loop.create_future()
        assert call.lock is not None
        with call.lock:
            if call.abandoned:
                raise ClientClosedError("the caller of this call is gone")
            call.mailbox.put((_RUN, (fn, future)))
        return await future

    return run


def _wait(call: _Call, loop: asyncio.AbstractEventLoop) -> Any:
    """Wait in the calling thread for `call`'s outcome, running what it asks to run here."""
    try:
        while True:
            kind, payload = call.mailbox.get()
            if kind == _DONE:
                return payload
            if kind == _RAISED:
                raise payload
            fn, future = payload
            try:
                result = fn()
            except Exception as exc:
                loop.call_soon_threadsafe(_set, future, None, exc)
            except BaseException:  # KeyboardInterrupt, SystemExit: for this thread only
                loop.call_soon_threadsafe(future.cancel)
                raise
            else:
                loop.call_soon_threadsafe(_set, future, result, None)
    except BaseException:
        _abandon(call, loop)
        raise


def _set(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(result)
    else:
        future.set_exception(exc)


def _abandon(call: _Call, loop: asyncio.AbstractEventLoop) -> None:
    """The caller leaves before the outcome (KeyboardInterrupt, say): cancel its task, and
    fail whatever the loop still waits for this thread to run."""
    if call.lock is not None:
        with call.lock:
            call.abandoned = True
    pending: list[Any] = []
    while not call.mailbox.empty():
        kind, payload = call.mailbox.get_nowait()
        if kind == _RUN:
            pending.append(payload[1])
    try:
        for future in pending:
            loop.call_soon_threadsafe(future.cancel)
        if call.task is not None:
            loop.call_soon_threadsafe(call.task.cancel)
    except RuntimeError:
        pass  # the loop is closed: nothing runs there any more
