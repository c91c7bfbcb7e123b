"""The error tree of mta.

Every failure that can reach a caller is one of these types.  The two that
matter most for mail are DeferError (temporary: the address stays on the
spool and is tried again) and FailError (permanent: the address is bounced).
They are different classes so that no layer can confuse one with the other.

Programmer errors (a malformed message id passed by our own code, say) are
ValueError/TypeError and crash loudly; the environment's errors are MtaError.
"""

from __future__ import annotations


class MtaError(Exception):
    """Base of every error mta raises on purpose."""


class ConfigError(MtaError):
    """A configuration problem; start-up stops with file, line and reason."""

    def __init__(self, reason: str, path: str | None = None, line: int | None = None) -> None:
        self.reason = reason
        self.path = path
        self.line = line
        super().__init__(self.__str__())

    def __str__(self) -> str:
        if self.path is not None and self.line is not None:
            return f"{self.path}:{self.line}: {self.reason}"
        if self.path is not None:
            return f"{self.path}: {self.reason}"
        return self.reason


class DeliveryError(MtaError):
    """The outcome of a delivery attempt that did not succeed.

    `code` is the SMTP reply code to use if this error has to be reported to
    an SMTP client, `esc` the RFC 3463 enhanced status code.  `errno` carries
    an OS or internal error number for the log's ``defer (N)`` field.
    """

    default_code = 451
    default_esc = "4.0.0"

    def __init__(
        self,
        message: str,
        code: int | None = None,
        esc: str | None = None,
        errno: int = 0,
        retry_error: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else self.default_code
        self.esc = esc if esc is not None else self.default_esc
        self.errno = errno
        # The retry-rule error name this failure matches (quota, refused, ...).
        self.retry_error = retry_error
        # Longer text for the bounce only (a pipe command's output), never the log.
        self.detail = detail


class DeferError(DeliveryError):
    """Temporary failure: keep the address on the spool and try again later."""


class FailError(DeliveryError):
    """Permanent failure: the address is bounced to the sender."""

    default_code = 550
    default_esc = "5.0.0"


class ExpansionError(MtaError):
    """A string expansion failed.

    `forced` is true for an explicit ``fail`` in the expansion, which most
    options treat as "this driver declines" rather than as an error.
    """

    def __init__(self, message: str, forced: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.forced = forced


class SpoolError(MtaError):
    """The spool could not be written or read; never acknowledge the message.

    `errno` is the OS error behind it (ENOSPC, EIO ...), 0 when there was none: a full disk
    is answered 452 where another failure is 451.
    """

    def __init__(self, message: str, errno: int = 0) -> None:
        super().__init__(message)
        self.errno = errno


class SpoolFormatError(SpoolError):
    """A spool file is malformed; the message is frozen, never half-read."""


class LockedError(MtaError):
    """Another process holds the message's -D lock."""


class SubmissionError(MtaError):
    """A locally submitted message is refused (no recipients, bad header ...).

    `exit_code` is the process exit status the command line should use.
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class AddressError(MtaError):
    """An address could not be parsed; `message` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
