"""User code runs as in a plain script: while it runs, asyncio sees no running loop.

The engine runs each task synchronously on the thread of its asyncio loop (user code expects
the main thread: signals, C libraries). ``asyncio.run()`` and ``loop.run_until_complete()``
refuse to start while a loop is running in the thread, yet users call them in their functions
as they would in a script. So, around user code, the engine marks its loop as not running and
then as running again. The public API has no way to do that (``set_event_loop`` does not touch
the *running* loop), so this uses asyncio's private ``_set_running_loop``, here and nowhere
else. ``tests/engine/test_engine_units.py`` guards it: a Python release that changes it fails
that test, not users' tasks.
"""

from __future__ import annotations

import asyncio
from asyncio import events as _events

_set_running_loop = _events._set_running_loop


def hide_running_loop() -> None:
    """Mark the thread's loop as not running (call :func:`restore_running_loop` after)."""
    _set_running_loop(None)


def restore_running_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    """Mark ``loop`` as the thread's running loop again."""
    _set_running_loop(loop)
