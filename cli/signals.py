"""Ctrl-C and SIGTERM for the long-running commands: what they do, in one place.

Two behaviours are offered:

:func:`run_until_signalled`
    Run a coroutine as a task; SIGINT or SIGTERM cancels it, so its ``finally`` blocks
    and exit stacks stop what it started, then :class:`KeyboardInterrupt` is raised
    (the command line turns it into exit code ``INTERRUPTED``). For commands that end
    by themselves and whose cleanup is short (``curate``).
:func:`on_stop_signals`
    Call a function on SIGINT or SIGTERM while a block runs. For services that run
    until told to stop (``broker``), whose stop is a normal end, and for work that
    must say goodbye before it stops (``client`` sends ``Leave``).

This module imports only the standard library: a headless client uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

__all__ = ["STOP_SIGNALS", "on_stop_signals", "run_until_signalled"]

T = TypeVar("T")

#: The signals that ask a command to stop.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def on_stop_signals(callback: Callable[[], Any]) -> Iterator[None]:
    """Call ``callback`` (on the running loop) at each SIGINT or SIGTERM inside the block.

    Parameters
    ----------
    callback : callable with no arguments
        Runs in the event loop's thread; it must not block.

    Notes
    -----
    Must be used inside a running event loop in the main thread; where the loop cannot
    take signal handlers (not the main thread, or not Unix) the block runs without them.
    """
    loop = asyncio.get_running_loop()
    installed = []
    for signum in STOP_SIGNALS:
        try:
            loop.add_signal_handler(signum, callback)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        installed.append(signum)
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


async def run_until_signalled(coro: Awaitable[T], *, recancel_s: float = 5.0) -> T:
    """Await ``coro``; SIGINT or SIGTERM cancel it and raise :class:`KeyboardInterrupt`.

    Parameters
    ----------
    coro : awaitable
        The command's work; its cleanup runs on cancellation.
    recancel_s : float
        While the work has not ended, cancel it again every ``recancel_s`` seconds:
        before Python 3.12, ``asyncio.wait_for`` (used by nats-py's requests) can swallow
        a cancellation that races with a reply. Keep the work's cleanup shorter.

    Returns
    -------
    object
        What ``coro`` returned.

    Raises
    ------
    KeyboardInterrupt
        After the cleanup, when a stop signal cancelled the work.
    """
    task = asyncio.ensure_future(coro)
    loop = asyncio.get_running_loop()
    signalled = False

    def cancel() -> None:
        if not task.done():
            task.cancel()
            loop.call_later(recancel_s, cancel)

    def stop() -> None:
        nonlocal signalled
        if not signalled:
            signalled = True
            cancel()

    with on_stop_signals(stop):
        try:
            return await task
        except asyncio.CancelledError:
            if signalled:
                raise KeyboardInterrupt from None
            raise
