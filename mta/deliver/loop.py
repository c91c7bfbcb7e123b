"""The event loop of a process's remote deliveries, made only when one needs it.

    with DeliveryLoop(runtime) as loop:
        Delivery(runtime, message_id, loop_runner=loop).run()

A queue run or `-M` hands one DeliveryLoop to each of its deliveries, so that
SMTP connections are reused from message to message (connection_max_messages);
leaving the `with` QUITs them.  asyncio (with ssl, concurrent.futures and
logging) is the largest import of a delivering process, and a delivery that
is all local never needs it: the asyncio.Runner is made at the first remote
delivery, and a process that delivers only locally never imports asyncio.
"""

from __future__ import annotations

from types import TracebackType

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    from collections.abc import Coroutine
    from typing import Any, TypeVar

    from mta.runtime import Runtime

    _T = TypeVar("_T")


async def close_connections(runtime: Runtime) -> None:
    """QUIT every cached SMTP connection of the remote transports."""
    for transport in runtime.transports.values():
        close = getattr(transport, "close_connections", None)
        if close is not None:
            await close()


class DeliveryLoop:
    """An asyncio.Runner made on first use; closing it QUITs the cached connections."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._runner: asyncio.Runner | None = None

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        if self._runner is None:
            import asyncio

            self._runner = asyncio.Runner()
        return self._runner.run(coroutine)

    def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return  # no remote delivery: no connection to close
        try:
            runner.run(close_connections(self.runtime))
        finally:
            runner.close()

    def __enter__(self) -> DeliveryLoop:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
