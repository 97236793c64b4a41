"""Ctrl-C and SIGTERM held back while the main thread is inside a database transaction.

Python raises KeyboardInterrupt wherever the main thread happens to be. Inside SQLAlchemy that can leave a
connection whose transaction nobody ends: SQLite closes such a connection only once its last statement is freed,
which the interrupt's traceback keeps alive, so the file stays locked and the runner that is giving its job back
waits on its own lock (about 3 % of interrupts landed so, measured with random Ctrl-C during transactions). The
`mergefront` command therefore installs `interrupt` for SIGINT and SIGTERM, and `session_scope` runs in `held()`:
a signal that arrives during a transaction is raised as KeyboardInterrupt when the transaction has ended (committed
or rolled back, its connection back in the pool). A second signal does not wait.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_depth = 0  # transactions the main thread is inside (signal handlers run only in the main thread)
_pending = False  # a signal arrived during one


def interrupt(_signum: int, _frame: object) -> None:
    """A signal handler: KeyboardInterrupt now, or when the main thread's transaction ends."""
    global _pending
    if _depth and not _pending:
        _pending = True
        return
    _pending = False
    raise KeyboardInterrupt


@contextmanager
def held() -> Iterator[None]:
    """Hold back `interrupt` while the block runs in the main thread; raise it once the block is left."""
    global _depth, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if not _depth and _pending:
            _pending = False
            raise KeyboardInterrupt
