"""Where a battery section's time goes: seconds of numba compilation while it runs."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

__all__ = ["CompileClock", "compile_clock"]


class CompileClock:
    """Seconds numba spends compiling in this process while the clock is installed.

    It listens to numba's ``"numba:compile"`` events, which fire only when a
    function is compiled (not when it is loaded from the on-disk cache). A
    function compiled while another one compiles (a callee) is inside the
    caller's event and counts once, so ``seconds`` is wall time spent compiling.
    Compilation in worker processes (a process pool or a dask cluster) is not
    seen; threads compile under numba's global lock, one at a time, so their
    events do not overlap.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.compilations = 0  # outermost events (a compiled function with its callees is one)
        self._depth = 0
        self._t0 = 0.0

    def on_start(self, event: Any) -> None:
        """numba calls this when a compilation starts."""
        if self._depth == 0:
            self._t0 = time.perf_counter()
        self._depth += 1

    def on_end(self, event: Any) -> None:
        """numba calls this when a compilation ends (also when it fails)."""
        self._depth -= 1
        if self._depth == 0:
            self.seconds += time.perf_counter() - self._t0
            self.compilations += 1


@contextmanager
def compile_clock() -> Iterator[CompileClock]:
    """A ``CompileClock`` installed for the ``with`` block (removed afterwards, also on errors)."""
    from numba.core import event

    class _Listener(event.Listener):  # numba's listener interface, forwarding to the clock
        def on_start(self, ev: Any) -> None:
            clock.on_start(ev)

        def on_end(self, ev: Any) -> None:
            clock.on_end(ev)

    clock = CompileClock()
    listener = _Listener()
    event.register("numba:compile", listener)
    try:
        yield clock
    finally:
        event.unregister("numba:compile", listener)
