"""deliver_drop_privilege (issue 15, point 3): every delivery runs as mta_user and nothing else.

As Exim's: a delivery that would need another user (a mailbox owned by its
recipient) cannot be made and is deferred, with a log line that says why;
one whose transport runs as mta_user is made, and what it writes is
mta_user's.  Without the option the same message reaches the recipient's own
mailbox (tests/e2e/test_local_delivery.py).
"""

from __future__ import annotations

import pwd

from tests.e2e.conftest import DOMAIN, E2E, message_text

AS_MTA_USER = """
drop_test:
  driver = smartuser
  local_parts = robot
  transport = as_mta_user
"""

AS_MTA_USER_TRANSPORT = """
as_mta_user:
  driver = pipe
  command = /bin/sh -c "id -u > {out}"
  user = mail
  group = mail
"""


def test_deliveries_run_as_mta_user_only(e2e: E2E) -> None:
    alice = e2e.user("alice")
    mail_user = pwd.getpwnam("mail")
    outdir = e2e.root / "robot"
    outdir.mkdir()
    outdir.chmod(0o1777)
    out = outdir / "uid"
    e2e.write_config(
        main="deliver_drop_privilege\nmta_user = mail\nmta_group = mail\n",
        directors=AS_MTA_USER,
        transports=AS_MTA_USER_TRANSPORT.format(out=out),
    )
    e2e.submit(message_text(f"root@{DOMAIN}", f"{alice.address}, robot@{DOMAIN}", "x", "body\n"), "-t", "-odi")
    (message_id,) = e2e.received_ids()
    log = e2e.log_for(message_id)
    assert f"=> robot <robot@{DOMAIN}> R=drop_test T=as_mta_user" in log
    assert out.read_text() == f"{mail_user.pw_uid}\n"
    assert out.stat().st_uid == mail_user.pw_uid
    assert (
        f"== {alice.name} <{alice.address}> R=localuser T=local_mbox defer (0): deliver_drop_privilege is set: "
        f"the local_mbox transport cannot run as uid {alice.uid} (deliveries run as mta_user mail only)"
    ) in log
    assert not e2e.mbox_path(alice).exists()
    assert alice.address in e2e.queue()
