"""The service manager's readiness protocol (systemd's sd_notify), without a library.

    notifier = Notifier.from_environment()     # takes NOTIFY_SOCKET out of os.environ
    notifier.ready("listening for SMTP on [0.0.0.0]:25")
    notifier.reloading()                       # RELOADING=1 with MONOTONIC_USEC (systemd >= 253 wants it)
    notifier.stopping()
    notifier.environment()                     # {"NOTIFY_SOCKET": ...} to hand to a re-executed image

The protocol is one datagram per message on the AF_UNIX socket named by
``$NOTIFY_SOCKET``: an absolute path, or ``@name`` for an abstract socket.
The payload is newline-separated ``KEY=value`` assignments.  With no
NOTIFY_SOCKET (not under systemd, or another supervisor) every call does
nothing.

A notification must never hold up or bring down the daemon: the socket is
non-blocking (a full queue drops the message rather than waiting), and any
error (the socket gone, a manager that went away, an address we do not
speak, such as ``vsock:``) is swallowed.  A missed READY=1 makes systemd
time the start out, which is visible and recoverable; a daemon that died
because its supervisor's socket vanished would not be.

The variable is removed from os.environ so that the daemon's children
(receivers, workers, and the commands of pipe deliveries) do not inherit it:
with ``NotifyAccess=main`` systemd would ignore them anyway, but a user's
pipe command has no business talking to the service manager.  A SIGHUP
re-exec puts it back into the new image's environment (``environment()``).

libsystemd's sd_notify and the python-systemd package do the same; neither
is worth a dependency (python-systemd needs libsystemd's headers to build).
"""

from __future__ import annotations

import os
import socket
import time

VARIABLE = "NOTIFY_SOCKET"


class Notifier:
    def __init__(self, address: str | None) -> None:
        self.address = address or None

    @classmethod
    def from_environment(cls) -> Notifier:
        return cls(os.environ.pop(VARIABLE, None))

    def environment(self) -> dict[str, str]:
        return {VARIABLE: self.address} if self.address else {}

    def send(self, **fields: object) -> bool:
        """Send KEY=value lines (keyword names as given); True if the datagram went out."""
        if not self.address:
            return False
        payload = "\n".join(f"{key}={value}" for key, value in fields.items()).encode("utf-8", "replace")
        if self.address.startswith("@"):
            target = "\0" + self.address[1:]  # Linux abstract namespace
        elif self.address.startswith("/"):
            target = self.address
        else:
            return False  # vsock: and the like: not ours to speak
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto(payload, target)
        except (OSError, ValueError):
            return False
        return True

    def ready(self, status: str = "") -> bool:
        fields: dict[str, object] = {"READY": 1, "MAINPID": os.getpid()}
        if status:
            fields["STATUS"] = _one_line(status)
        return self.send(**fields)

    def reloading(self, status: str = "") -> bool:
        # MONOTONIC_USEC lets systemd (>= 253, Type=notify-reload) tell this reload from an older one.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        fields: dict[str, object] = {"RELOADING": 1, "MONOTONIC_USEC": usec}
        if status:
            fields["STATUS"] = _one_line(status)
        return self.send(**fields)

    def stopping(self, status: str = "") -> bool:
        fields: dict[str, object] = {"STOPPING": 1}
        if status:
            fields["STATUS"] = _one_line(status)
        return self.send(**fields)

    def status(self, text: str) -> bool:
        return self.send(STATUS=_one_line(text))


def _one_line(text: str) -> str:
    return " ".join(text.split())
