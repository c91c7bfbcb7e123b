"""Reading files that a user's own data names, with that user's rights.

A `.forward` file, every file it ``:include:``s, and any path taken
relative to a user's home are opened by a child process that has become
the user (mta.privilege.run_as_user), so a user can never make root read
for them what they could not read themselves: ``:include:/root/private``,
or a file in a directory they cannot enter, fails exactly as it would for
the user, and nothing of it reaches a bounce.  When mta does not run as
root there is nobody to become: the files are read in-process, with the
invoking user's own rights.

The results keep the shape of mta.route.redirect.read_list_file: text and
stat, FileNotFoundError / NotADirectoryError for a missing file (the caller
decides what that means) and DeferError for everything else.
"""

from __future__ import annotations

import errno
import os

from mta import record
from mta.errors import DeferError
from mta.privilege import AsUserError, run_as_user
from mta.route.redirect import read_list_file


@record.dataclass(frozen=True, slots=True)
class FileOwner:
    """The identity a user's files are read with."""

    uid: int
    gid: int
    login: str

    @property
    def needs_child(self) -> bool:
        """Only root can become the user; anyone else reads with their own rights."""
        return os.geteuid() == 0 and self.uid != 0


def read_user_file(owner: FileOwner, path: str, what: str) -> tuple[str, os.stat_result, os.stat_result]:
    """(text, lstat of the name, stat of the file) of a list file, read as `owner`."""
    if not owner.needs_child:
        try:
            link = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise
        except OSError as exc:
            raise DeferError(f"cannot stat {what} {path}: {exc.strerror}", errno=exc.errno or 0) from None
        text, st = read_list_file(path, what)
        return text, link, st
    try:
        report = run_as_user(owner.uid, owner.gid, owner.login, lambda: _job(path, what))
    except AsUserError as exc:
        raise DeferError(f"cannot read {what} {path} as {owner.login}: {exc}") from None
    return _decode(path, what, report)


def user_file_reader(owner: FileOwner):  # type: ignore[no-untyped-def]
    """An `include_reader` for mta.route.redirect: :include: files read as `owner`."""

    def read(path: str, what: str) -> tuple[str, os.stat_result]:
        text, _link, st = read_user_file(owner, path, what)
        return text, st

    return read


def _job(path: str, what: str) -> dict[str, object]:
    """Runs in the child, as the user."""
    try:
        link = os.lstat(path)
        text, st = read_list_file(path, what)
    except (FileNotFoundError, NotADirectoryError) as exc:
        return {"missing": exc.errno}
    except DeferError as exc:
        return {"defer": exc.message, "errno": exc.errno}
    except OSError as exc:
        return {"defer": f"cannot stat {what} {path}: {exc.strerror}", "errno": exc.errno or 0}
    return {"text": text, "lstat": list(link), "stat": list(st)}


def _decode(path: str, what: str, report: dict[str, object]) -> tuple[str, os.stat_result, os.stat_result]:
    if "missing" in report:
        code = report["missing"]
        number = code if isinstance(code, int) else errno.ENOENT
        cls = NotADirectoryError if number == errno.ENOTDIR else FileNotFoundError
        raise cls(number, os.strerror(number), path)
    if "defer" in report or "error" in report:
        number = report.get("errno")
        reason = str(report.get("defer") or report.get("error"))
        raise DeferError(reason, errno=number if isinstance(number, int) else 0)
    try:
        text = report["text"]
        link = os.stat_result(report["lstat"])  # type: ignore[arg-type]
        st = os.stat_result(report["stat"])  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError):
        raise DeferError(f"cannot read {what} {path}: malformed report from the reading process") from None
    if not isinstance(text, str):
        raise DeferError(f"cannot read {what} {path}: malformed report from the reading process")
    return text, link, st
