"""Ctrl-C and SIGTERM stop the command, wherever they land: the one place that handles them.

Converters and runtimes (TFLiteConverter, tf2onnx, ONNX Runtime quantization, tfmot, Keras
training) run native code. A signal that lands there can come back out of the library as
its own error (a "conversion failed"), or not at all. So within :func:`handling_signals`
(the CLI runs every command inside it) SIGINT and SIGTERM are *recorded* and raise
:class:`Interrupted`; and every place that turns a library's exception into a result (a
failed variant, a failed row, an error message) calls :func:`check` first, so the interrupt
wins over whatever error the library made of it::

    try:
        artifact = convert(...)
    except Exception as exc:
        interrupts.check(exc)           # a signal arrived: raise Interrupted, not a failure
        return failed(exc)
    interrupts.check()                  # a signal the library swallowed

Leaving :func:`handling_signals` re-checks, so a recorded signal is never lost. The CLI
prints ``interrupted`` and exits 130 for SIGINT, 143 for SIGTERM (128 + the signal number).
``Interrupted`` is a ``KeyboardInterrupt``: ``except Exception`` never catches it, and
``except BaseException`` clean-ups (temporary files) still run.

>>> try:
...     with handling_signals():
...         signal.raise_signal(signal.SIGTERM)
... except Interrupted as exc:
...     print(exc, exc.exit_code, received())
SIGTERM 143 None
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_received: int | None = None   # the signal number recorded inside handling_signals


class Interrupted(KeyboardInterrupt):
    """The command was stopped by SIGINT or SIGTERM; ``exit_code`` is 128 + the signal."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def received() -> int | None:
    """The signal recorded by the innermost active :func:`handling_signals`, if any."""
    return _received


def check(cause: BaseException | None = None) -> None:
    """Raise :class:`Interrupted` (from ``cause``) if a signal was recorded, else return.

    Call it right after a native call returns and first in every ``except Exception`` that
    turns a library's error into a result."""
    if _received is not None:
        raise Interrupted(_received) from cause


def check_child(returncode: int) -> None:
    """Raise :class:`Interrupted` if a child process ended by SIGINT/SIGTERM (killed by it,
    or exit 130/143 from our own CLI): its interruption is ours, not a failed result."""
    for signum in SIGNALS:
        if returncode in (-signum, 128 + signum):
            raise Interrupted(signum)


def _record(signum: int, _frame: FrameType | None) -> None:
    global _received
    _received = signum
    raise Interrupted(signum)


@contextmanager
def handling_signals() -> Iterator[None]:
    """Within: SIGINT/SIGTERM are recorded and raise :class:`Interrupted`. On the way out,
    a recorded signal wins over the block's result or exception. Signals reach only the main
    thread: elsewhere this only re-checks. A signal ignored on entry stays ignored. Nests;
    the outermost resets the record."""
    global _received
    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.getsignal(s) for s in SIGNALS} if main else {}
    outermost = main and _record not in previous.values()
    # A signal ignored when we start (`nohup`, `cmd &` in a script) stays ignored.
    previous = {s: h for s, h in previous.items() if h is not signal.SIG_IGN}
    if outermost:
        _received = None
    try:
        for signum in previous:
            signal.signal(signum, _record)
        try:
            yield
        except Exception as exc:
            check(exc)
            raise
        check()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if outermost:
            _received = None
