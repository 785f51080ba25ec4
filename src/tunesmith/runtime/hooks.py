"""Extra Trainer callbacks for the runs started inside a `with extra_callbacks(...)` block.

Used by orchestrators that wrap a whole run (hyper-parameter search reports and prunes through
it) without the stage recipes knowing about them.
"""

from __future__ import annotations

import contextlib
import contextvars

_EXTRA: contextvars.ContextVar[tuple] = contextvars.ContextVar("tunesmith_extra_callbacks", default=())


@contextlib.contextmanager
def extra_callbacks(*callbacks):
    token = _EXTRA.set(_EXTRA.get() + callbacks)
    try:
        yield
    finally:
        _EXTRA.reset(token)


def current() -> list:
    return list(_EXTRA.get())
