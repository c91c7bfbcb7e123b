"""Exim message ids: making new ones, parsing both historical forms.

Forms (base 62, digits ``0-9A-Za-z``, most significant digit first):

* current (Exim 4.97+), 23 characters, ``TTTTTT-PPPPPPPPPPP-SSSS``:
  epoch seconds (6), process id (11), microseconds (4).  With
  ``localhost_number`` N the last part is ``N * 500000 + usec // 2``.
* old (Exim 4.96 and earlier), 16 characters, ``TTTTTT-PPPPPP-SS``:
  seconds (6), process id (6), fraction of a second (2), ``N * 200 +
  usec // 5000`` with ``localhost_number`` N (0 when unset).  The real
  Exim 4.96 spool files in research/exim-samples/ show 1/200 s units even
  without a localhost number (id ``1xV6uE-0005SY-29``: fraction 133, and
  ``-received_time_usec .669121``), not the 1/2000 s that
  research/exim-contracts.md states; we follow the files.

We generate only the current form and read both.  (Exim uses base 36 on
case-insensitive file systems; we do not support those.)

Uniqueness.  An id is unique as long as no two ids are made by the same pid
in the same id tick (1 us, or 2 us with a localhost number).  Two processes
never share a pid at the same moment, so only this process can repeat its
own ids: we remember the last tick issued here and never issue it again.
When the clock has not yet moved on we wait for it (a tick is a
microsecond, so the wait is short), so an id's time is never in the future
and a later process that reuses our pid cannot meet one of our ids.  Only
if the clock has stepped backwards by a large amount do we run ahead of it
rather than stall.  After fork() the child has a new pid and starts afresh.
"""

from __future__ import annotations

import _thread  # the lock primitive without importing threading (start-up time)
import os
import time

from mta.lazy_pattern import lazy_compile

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

BASE62_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_DIGIT_VALUE = {c: i for i, c in enumerate(BASE62_DIGITS)}

MESSAGE_ID_LENGTH = 23
MESSAGE_ID_LENGTH_OLD = 16
TIME_LEN = 6
PID_LEN = 11
PID_LEN_OLD = 6
FRACTION_LEN = 4
FRACTION_LEN_OLD = 2
ID_SPLIT_INDEX = TIME_LEN - 1  # split_spool_directory's character: the lowest digit of the second

# Exim's localhost_number may be 0..16.
LOCALHOST_NUMBER_MAX = 16

# If the clock is behind the last id issued by more than this (microseconds)
# it has been stepped back: run ahead of it instead of waiting.
_MAX_WAIT_US = 1_000


class MessageIdParts(tuple[int, int, int]):
    """The three fields of a message id, decoded (raw values, not scaled).

    A plain tuple subclass rather than a NamedTuple, whose class creation
    costs a millisecond of every command's start-up.
    """

    __slots__ = ()

    def __new__(cls, time: int, pid: int, fraction: int) -> MessageIdParts:
        return super().__new__(cls, (time, pid, fraction))

    @property
    def time(self) -> int:
        """Epoch seconds."""
        return self[0]

    @property
    def pid(self) -> int:
        return self[1]

    @property
    def fraction(self) -> int:
        """The sub-second field as stored (see the module docstring)."""
        return self[2]


def base62_encode(value: int, width: int) -> str:
    """`value` in base 62, zero-padded to exactly `width` digits."""
    if value < 0 or value >= 62**width:
        raise ValueError(f"{value} does not fit in {width} base-62 digits")
    digits = []
    for _ in range(width):
        value, digit = divmod(value, 62)
        digits.append(BASE62_DIGITS[digit])
    return "".join(reversed(digits))


def base62_decode(text: str) -> int:
    value = 0
    for c in text:
        digit = _DIGIT_VALUE.get(c)
        if digit is None:
            raise ValueError(f"{text!r} is not a base-62 number")
        value = value * 62 + digit
    return value


# Both forms in one expression: every file name made from an id checks it, several times a message.
_DIGIT = "[0-9A-Za-z]"
_ID_FORMS = lazy_compile(
    f"{_DIGIT}{{{TIME_LEN}}}-(?:{_DIGIT}{{{PID_LEN}}}-{_DIGIT}{{{FRACTION_LEN}}}"
    f"|{_DIGIT}{{{PID_LEN_OLD}}}-{_DIGIT}{{{FRACTION_LEN_OLD}}})"
)


def is_message_id(text: object) -> bool:
    """True if `text` is exactly a 23- or 16-character message id."""
    return isinstance(text, str) and _ID_FORMS.fullmatch(text) is not None


def is_old_message_id(message_id: str) -> bool:
    """True for the 16-character (Exim <= 4.96) form; `message_id` must be valid."""
    return len(message_id) == MESSAGE_ID_LENGTH_OLD


def check_message_id(message_id: object) -> str:
    """Return `message_id` if valid, else raise ValueError.

    Every function that builds a file name from an id calls this: an id is
    only base-62 digits and dashes, so it can never name another file.
    """
    if not is_message_id(message_id):
        raise ValueError(f"not a message id: {message_id!r}")
    assert isinstance(message_id, str)
    return message_id


def parse_message_id(message_id: str) -> MessageIdParts:
    """Split a message id of either form into (time, pid, fraction).

    Raises ValueError if `message_id` is not a message id.
    """
    check_message_id(message_id)
    time_part, pid_part, fraction_part = message_id.split("-")
    return MessageIdParts(base62_decode(time_part), base62_decode(pid_part), base62_decode(fraction_part))


def id_split_char(message_id: str) -> str:
    """The sub-directory used by split_spool_directory: the 6th character,
    i.e. the lowest base-62 digit of the arrival second."""
    check_message_id(message_id)
    return message_id[ID_SPLIT_INDEX]


def arrival_order(message_id: str) -> tuple[float, str]:
    """The key that sorts a queue listing oldest first: (message_time(message_id), message_id),
    decoding only the time and the fraction (a listing of 100,000 messages sorts with it).
    `message_id` must be valid."""
    if len(message_id) == MESSAGE_ID_LENGTH_OLD:
        return base62_decode(message_id[:TIME_LEN]) + base62_decode(message_id[-FRACTION_LEN_OLD:]) / 200, message_id
    return base62_decode(message_id[:TIME_LEN]) + base62_decode(message_id[-FRACTION_LEN:]) / 1_000_000, message_id


def message_time(message_id: str, localhost_number: int | None = None) -> float:
    """The arrival time encoded in an id, as epoch seconds with a fraction.

    `localhost_number` must be the value the id was made with (it is mixed
    into the fraction field and cannot be recovered from the id alone).
    """
    parts = parse_message_id(message_id)
    if is_old_message_id(message_id):
        return parts.time + (parts.fraction - (localhost_number or 0) * 200) / 200
    if localhost_number is None:
        return parts.time + parts.fraction / 1_000_000
    return parts.time + (parts.fraction - localhost_number * 500_000) * 2 / 1_000_000


class _IssuedState:
    """What this process has issued; reset when the pid changes (fork)."""

    def __init__(self) -> None:
        self.lock = _thread.allocate_lock()
        self.pid = -1
        self.last_us = -1  # time of the last id issued, in microseconds
        # The first two parts of the id, which change once a second and once a process.
        self.seconds = -1
        self.seconds_text = ""
        self.pid_text = ""


_state = _IssuedState()


def _reset_after_fork() -> None:
    # A forked child must not inherit a held lock; its pid differs anyway.
    _state.lock = _thread.allocate_lock()
    _state.pid = -1
    _state.last_us = -1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def new_message_id(localhost_number: int | None = None, *, clock: Callable[[], int] = time.time_ns) -> str:
    """Make a new 23-character message id, unique on this host.

    With `localhost_number` (0..16) ids are also unique across hosts sharing
    a spool or a message-id namespace, as in Exim.  `clock` (nanoseconds
    since the epoch) is for tests.
    """
    if localhost_number is None:
        resolution = 1
    elif 0 <= localhost_number <= LOCALHOST_NUMBER_MAX:
        resolution = 2
    else:
        raise ValueError(f"localhost_number must be 0..{LOCALHOST_NUMBER_MAX}, not {localhost_number}")

    with _state.lock:
        pid = os.getpid()
        if pid != _state.pid:
            _state.pid = pid
            _state.last_us = -1
            _state.pid_text = base62_encode(pid, PID_LEN)
        while True:
            now_us = clock() // 1000
            tick_us = now_us - now_us % resolution
            if tick_us > _state.last_us:
                break
            if _state.last_us - tick_us > _MAX_WAIT_US:
                # The clock stepped back: stay unique by running ahead of it.
                tick_us = _state.last_us + resolution
                break
            # Same tick as the last id: wait for the clock to move on.
            time.sleep(0)
        _state.last_us = tick_us
        seconds, usec = divmod(tick_us, 1_000_000)
        if seconds != _state.seconds:
            _state.seconds, _state.seconds_text = seconds, base62_encode(seconds, TIME_LEN)
        prefix = f"{_state.seconds_text}-{_state.pid_text}-"

    fraction = usec if localhost_number is None else localhost_number * 500_000 + usec // 2
    return prefix + base62_encode(fraction, FRACTION_LEN)
