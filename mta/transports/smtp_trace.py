"""The SMTP dialogue of a delivery on stderr, as Exim's -v and -d+transport show it.

    Connecting to mx.example.org [192.0.2.7]:25 ...  connected
      SMTP<< 220 mx.example.org ESMTP
      SMTP>> EHLO client.example
      SMTP<< 250-mx.example.org Hello
             250 PIPELINING
      SMTP>> MAIL FROM:<alice@example.com> SIZE=1234
      ...

Both runners (smtp_sync, smtp_async) call `before` and `after` around each
request of the plan, only when mta.debug has something on, so that this
costs nothing otherwise.  Secrets never appear: the argument of AUTH, and
every line sent in answer to a 334 challenge, show as ``****``.  Replies go
through mta.printable (a server may send control characters).
"""

from __future__ import annotations

from mta import debug
from mta.printable import printable
from mta.transports.smtp_wire import Close, Connect, Receive, Reply, Send, SendBody, StartTls, TlsInfo

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Runners (one connection at a time each) that are in the middle of an AUTH exchange.
_in_auth: set[int] = set()


def _on() -> bool:
    return "v" in debug.active or "transport" in debug.active


def before(runner: object, op: object) -> None:
    if not _on():
        return
    if isinstance(op, Send):
        for line in op.data.decode("utf-8", "replace").split("\r\n"):
            if not line:
                continue
            if id(runner) in _in_auth:
                line = "****"
            elif line[:5].upper() == "AUTH ":
                mechanism = line[5:].split(" ", 1)
                line = f"AUTH {mechanism[0]}" + (" ****" if len(mechanism) > 1 else "")
                _in_auth.add(id(runner))
            debug.write(f"  SMTP>> {printable(line)}")
    elif isinstance(op, Connect):
        host = op.host
        port = f":{host.port}" if getattr(host, "port", None) else ""
        debug.write(f"Connecting to {host.name} [{host.address}]{port} ...")
    elif isinstance(op, SendBody):
        debug.write('  SMTP>> writing message and terminating "."')
    elif isinstance(op, StartTls):
        debug.write("  (starting TLS)")
    elif isinstance(op, Close):
        _in_auth.discard(id(runner))
        debug.write("  SMTP(close)>>")


def after(runner: object, op: object, value: Any) -> None:
    if not _on():
        return
    if isinstance(op, Receive) and isinstance(value, Reply):
        if value.code != 334:
            _in_auth.discard(id(runner))
        lines = value.lines or ("",)
        last = len(lines) - 1
        for index, text in enumerate(lines):
            sep = " " if index == last else "-"
            lead = "  SMTP<< " if index == 0 else "         "
            debug.write(f"{lead}{value.code}{sep}{printable(text)}")
    elif isinstance(op, Connect):
        debug.write("  connected" + (f" (TLS {value.cipher})" if isinstance(value, TlsInfo) else ""))
    elif isinstance(op, StartTls) and isinstance(value, TlsInfo):
        debug.write(f"  TLS session: cipher={value.cipher} verified={'yes' if value.verified else 'no'}")


def failed(runner: object, op: object, error: Exception) -> None:
    if _on():
        _in_auth.discard(id(runner))
        debug.write(f"  SMTP failure: {printable(str(getattr(error, 'text', error)))}")
