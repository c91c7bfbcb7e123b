"""Listing the spool in bulk: what a queue listing (mta -bp) and a queue run read of a big queue.

    list_messages(spool)                       -> [(id, directory, has -J), ...], oldest first
    read_listed(spool, id, directory, has_j)   -> (envelope, body size, -J addresses)
    input_directory_entries(directory, top)    -> (id, True) per -H, (id, False) per -J, streamed

mta.spool.store finds one message's files by looking (a stat per place it may be);
these read each directory once and then name the files, so that 100,000 messages
cost one open and one stat each, and a queue run need not hold the names of the
200,000 files of such a queue.
"""

from __future__ import annotations

import os

from mta.errors import SpoolFormatError
from mta.spool.files import NoSuchMessage, lock_length, os_error, read_regular_file
from mta.spool.format import DATA_SUFFIX, HEADER_SUFFIX, JOURNAL_SUFFIX, read_header_file
from mta.spool.ids import ID_SPLIT_INDEX, arrival_order, check_message_id, is_message_id

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from mta.spool.envelope import Envelope
    from mta.spool.store import Spool


def list_messages(spool: Spool, ordered: bool = True) -> list[tuple[str, str, bool]]:
    """Spool.list_message_ids with what the same reading of the directories tells of each
    message: (id, the input directory that holds its -H, whether a -J is beside it).  A
    listing of a big queue then opens the -H and stats the -D by name, without looking for
    them first, and opens a -J only where there is one."""
    found: dict[str, tuple[str, str, bool]] = {}  # a dict keeps the first-seen order
    directories = spool.input_directories()
    for directory in directories:
        ids: list[str] = []
        journals: set[str] = set()
        for message_id, is_header in input_directory_entries(directory, directory is directories[0]):
            if is_header:
                ids.append(message_id)
            else:
                journals.add(message_id)
        path = str(directory)
        for message_id in ids:
            if message_id not in found:
                found[message_id] = (message_id, path, message_id in journals)
    if not ordered:
        return list(found.values())
    return [found[i] for i in sorted(found, key=arrival_order)]


def read_listed(
    spool: Spool, message_id: str, directory: str, has_journal: bool, headers: bool = False
) -> tuple[Envelope, int, list[str]]:
    """A message as list_messages found it: its envelope (with its headers only if `headers`:
    see read_header_file), the size of its body, and the addresses in its -J.  NoSuchMessage
    if the -H or the -D has gone (delivered meanwhile, or a -D missing: the caller tells
    which)."""
    check_message_id(message_id)
    base = directory + os.sep + message_id
    try:
        data = read_regular_file(base + HEADER_SUFFIX)
    except FileNotFoundError:
        raise NoSuchMessage(f"message {message_id} is not on the spool") from None
    except OSError as exc:
        raise os_error("read", base + HEADER_SUFFIX, exc) from exc
    envelope = read_header_file(data, message_id, headers=headers)
    try:
        size = os.stat(base + DATA_SUFFIX).st_size - lock_length(message_id)
    except FileNotFoundError:
        raise NoSuchMessage(f"message {message_id} is not on the spool") from None
    except OSError as exc:
        raise os_error("stat", base + DATA_SUFFIX, exc) from exc
    if size < 0:
        raise SpoolFormatError(f"spool file {base + DATA_SUFFIX} is shorter than its first line")
    return envelope, size, spool.read_journal(message_id) if has_journal else []


def input_directory_entries(directory: Path, top: bool) -> Iterator[tuple[str, bool]]:
    """(message id, True) for each complete message (-H) in an input directory (`top`: input/
    itself; in a sub-directory, only the ids that belong there), (message id, False) for each
    -J, as the directory returns them, one at a time."""
    split_char = "" if top else directory.name
    cut = -len(HEADER_SUFFIX)
    for name in directory_names(directory):
        suffix = name[cut:]
        if suffix == HEADER_SUFFIX:
            message_id = name[:cut]
            if is_message_id(message_id) and (top or message_id[ID_SPLIT_INDEX] == split_char):
                yield message_id, True
        elif suffix == JOURNAL_SUFFIX:
            yield name[:cut], False


def directory_names(directory: Path) -> Iterator[str]:
    """The names in a directory, one at a time (none if it has gone)."""
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                yield entry.name
    except FileNotFoundError:
        return
    except OSError as exc:
        raise os_error("directory read", directory, exc) from exc
