"""Making text safe to show: one rule for logs, terminals and error messages.

Data from a message or the network may hold control characters (ESC
sequences that repaint a terminal, CR and LF that forge a log line or an
error line) and Unicode format and separator characters (U+202E reverses
the text that follows, U+2028 breaks a line in some viewers).  `printable`
replaces every such character by a backslash escape in Exim's style
(``\\033``, ``\\r``, ``\\x{202e}``) and leaves everything else, backslashes
included, as it is: text that is already printable passes unchanged, so
applying it twice, or to a field that `mta.log.escape` has escaped already,
changes nothing.

`PrintableStream` applies it to everything written to standard output and
standard error by the command-line program (mta.cli installs it), so no
code path can print raw message data to an administrator's terminal.
"""

from __future__ import annotations

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    return f"\\{code:03o}" if code < 256 else f"\\x{{{code:x}}}"


def printable(text: str, keep: str = "") -> str:
    """`text` with every non-printable character escaped, except those in `keep` (e.g. "\\n\\t")."""
    if text.isprintable():
        return text
    if keep:
        # A listing written in big chunks has newlines everywhere: one pass in C without
        # them, not a Python step per character.
        rest = text
        for ch in keep:
            rest = rest.replace(ch, "")
        if rest.isprintable():
            return text
    return "".join(ch if ch.isprintable() or ch in keep else _escaped(ch) for ch in text)


class PrintableStream:
    """A text stream that escapes what `printable` escapes before writing it on.

    `keep` names characters passed through (standard output keeps newlines
    and tabs: listings and -be results have several lines).  With
    `one_line_writes`, a newline is kept only at the end of a write: an
    error message is one line, and a newline inside it (from an address or
    a header) must not start a line of its own.
    """

    def __init__(self, stream: TextIO, keep: str = "", one_line_writes: bool = False) -> None:
        self._stream = stream
        self._keep = keep
        self._one_line = one_line_writes

    def write(self, text: str) -> int:
        if self._one_line and text.endswith("\n"):
            safe = printable(text[:-1], self._keep) + "\n"
        else:
            safe = printable(text, self._keep)
        self._stream.write(safe)
        return len(text)

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> object:
        # flush, fileno, isatty, buffer, encoding ...: those of the real stream.
        return getattr(self._stream, name)
