"""`mailq --json` (`mta -bp --json`): the queue as JSON lines, in the shape of Postfix's `postqueue -j`.

One object per message, one message per line, so that monitoring scripts
written for Postfix (and `jq`) can read it:

    {"queue_name": "deferred", "queue_id": "1xV6uq-0005Vj-1t", "arrival_time": 1795351412,
     "message_size": 369, "forced_expire": false, "sender": "alice@example.com",
     "recipients": [{"address": "bob@example.net", "delay_reason": "Connection refused"}],
     "delivered_recipients": ["carol@example.org", "dave@example.org"],
     "frozen": false, "frozen_since": null, "warning_count": 0}

- Postfix's members come first, with Postfix's meaning, so that a script
  written for ``postqueue -j`` reads them unchanged:
  - ``queue_name`` maps the message's state onto Postfix's queue names:
    ``hold`` (frozen), ``active`` (being delivered: its lock is held),
    ``incoming`` (never tried yet), ``deferred`` (tried, still pending), and
    ``corrupt`` for a message whose files cannot be read;
  - ``forced_expire`` is always false (Postfix's ``postsuper -e``; mta's
    nearest, ``-Mg``, bounces at once and leaves nothing queued);
  - ``sender`` is "" for the null sender (a bounce), as Postfix writes it;
  - ``recipients`` are the recipients still to be delivered, as Postfix
    lists them, each with ``delay_reason`` when its message log records why
    its last attempt was deferred.
- mta's own members follow: ``delivered_recipients`` (what -bp marks
  ``D``; left out with -bpu), ``frozen``, ``frozen_since`` and
  ``warning_count``.
- A message whose files cannot be read gives ``{"queue_name": "corrupt",
  "queue_id", "arrival_time", "error"}``; the listing goes on.

Text is written with JSON escapes for everything outside ASCII, so no
message data reaches a terminal raw.
"""

from __future__ import annotations

import json
import re

from mta.errors import SpoolError
from mta.spool.ids import message_time

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mta.spool.envelope import Envelope
    from mta.spool.store import Spool

# A deferral line of a message log, as mta.deliver.deliverlog writes it (Exim's has no "=="):
#   2026-11-22 12:43:32 == bob@example.net R=smarthost T=remote_smtp defer (111): Connection refused
#   2026-11-22 12:43:32 alice <sales@example.com> R=localuser T=local_mbox defer (-22): mailbox is full
_DEFERRAL = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?(?: [-+]\d{4})? (?:== )?"
    r"(?P<name>\S+)(?: <(?P<top>[^>]*)>)?(?: [RT]=\S+)* (?:routing )?defer \(-?\d+\): (?P<why>.*)"
)
# Not a reason of its own: it repeats that an earlier attempt failed.
_NOT_A_REASON = "retry time not reached"


def message_object(
    spool: Spool, envelope: Envelope, size: int, delivered: set[str], undelivered_only: bool
) -> dict[str, Any]:
    reasons = _delay_reasons(spool, envelope.message_id)
    recipients = []
    for recipient in envelope.recipients:
        if recipient.address in delivered:
            continue
        entry: dict[str, Any] = {"address": recipient.address}
        if recipient.address in reasons:
            entry["delay_reason"] = reasons[recipient.address]
        recipients.append(entry)
    item: dict[str, Any] = {
        "queue_name": _queue_name(spool, envelope),
        "queue_id": envelope.message_id,
        "arrival_time": envelope.received_time,
        "message_size": size,
        "forced_expire": False,
        "sender": envelope.sender_address,
        "recipients": recipients,
    }
    if not undelivered_only:
        item["delivered_recipients"] = [r.address for r in envelope.recipients if r.address in delivered]
    item.update(frozen=envelope.frozen is not None, frozen_since=envelope.frozen, warning_count=envelope.warning_count)
    return item


def error_object(message_id: str, problem: str) -> dict[str, Any]:
    return {"queue_name": "corrupt", "queue_id": message_id, "arrival_time": int(message_time(message_id)),
            "error": problem}


def json_line(item: dict[str, Any]) -> str:
    return json.dumps(item, ensure_ascii=True, separators=(", ", ": ")) + "\n"


def _queue_name(spool: Spool, envelope: Envelope) -> str:
    if envelope.frozen is not None:
        return "hold"
    try:
        if spool.is_locked(envelope.message_id):
            return "active"
    except SpoolError:
        pass  # delivered and removed meanwhile, or unreadable: its state is what -H said
    return "incoming" if envelope.deliver_firsttime else "deferred"


def _delay_reasons(spool: Spool, message_id: str) -> dict[str, str]:
    """The last deferral text of each address in the message log ({} without one)."""
    try:
        text = spool.read_msglog(message_id)
    except SpoolError:
        return {}
    reasons: dict[str, str] = {}
    for line in (text or "").splitlines():
        match = _DEFERRAL.fullmatch(line)
        if match is None or match["why"].startswith(_NOT_A_REASON):
            continue
        reasons[match["top"] or match["name"]] = match["why"]
    return reasons
