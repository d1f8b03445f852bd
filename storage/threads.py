"""Running blocking work on a dedicated thread from asyncio, to completion."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")


async def run_to_completion(executor: Executor, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run `fn` on `executor`; if the caller is cancelled meanwhile, still wait for the thread to finish
    and only then re-raise the cancellation. An SQLite connection owned by one thread at a time must
    never be handed on (or closed) while a cancelled caller's statement is still running on it."""
    fut = asyncio.get_running_loop().run_in_executor(executor, partial(fn, *args, **kwargs))
    cancelled = False
    while not fut.done():
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            cancelled = True
        except BaseException:
            break
    if cancelled:
        raise asyncio.CancelledError
    return fut.result()
