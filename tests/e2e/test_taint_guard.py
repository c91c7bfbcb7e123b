"""Issue 11, point 3: taint is the one guard, shown from real submissions and deliveries.

Header text is message data, so it is tainted.  These tests send messages
whose headers try to reach a file, a command or a socket through the
expansion of a transport's `file` option, and check in the main log and on
disk that each attempt was refused:

- a tainted value stays tainted through operators, items, hashes and list
  operations (otherwise the path built from it would have been accepted);
- a tainted value never names a file, a command (${run}) or a socket
  (${readsocket});
- a tainted value is never expanded a second time (${expand:} refuses it).

${run} itself works when the configuration alone supplies the command.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.e2e.conftest import DOMAIN, E2E

# One transport; which expression names the file depends on the local part.
CASES = {
    "lc": "${lc:$h_x-target:}",
    "chain": "${sg{${substr_0_200:${extract{1}{,}{$h_x-target:,x}}}}{XX}{xx}}",
    "reduce": "${reduce{<, $h_x-target:}{}{$value$item}}",
    "md5": "{mail}/m${md5:$h_x-target:}",
    "run": "{mail}/${run{/bin/echo -n $h_subject:}}",
    "preexpand": "{mail}/${run,preexpand{/bin/echo -n $h_subject:}}",
    "runok": "{mail}/${run{/bin/echo -n from-run}}",
    "expand": "{mail}/${expand:$h_subject:}",
    "socket": "{mail}/${readsocket{$h_x-socket:}{hello}}",
}


def file_option(mail: Path) -> str:
    expression = "{mail}/plain"
    for local_part, text in reversed(CASES.items()):
        expression = f"${{if eq{{$local_part}}{{{local_part}}}{{{text}}}{{{expression}}}}}"
    return expression.replace("{mail}", str(mail))


CONFIG = """\
never_users = root

begin directors

guarded:
  driver = smartuser
  transport = guarded_file
  user = {owner}

begin transports

guarded_file:
  driver = appendfile
  file = {file}
"""


def test_tainted_data_never_names_a_file_command_or_socket(e2e: E2E) -> None:
    owner = e2e.user("owner", home=False)
    mail = e2e.root / "spool-mail"
    mail.mkdir()
    mail.chmod(0o1777)
    outside = e2e.root / "outside"
    pwned = e2e.root / "pwned"
    socket_path = e2e.root / "sock"
    e2e.env.write_config(CONFIG.format(owner=owner.name, file=file_option(mail)))
    headers = f"X-Target: {outside}\nX-Socket: {socket_path}\n"
    subject = "${run{/usr/bin/touch " + str(pwned) + "}}"
    recipients = [f"{local_part}@{DOMAIN}" for local_part in CASES]
    e2e.submit(f"From: root@{DOMAIN}\nSubject: {subject}\n{headers}\nbody\n", "-odi", *recipients)
    (message_id,) = e2e.received_ids()
    log = "\n".join(e2e.log_for(message_id))

    def reason(local_part: str) -> str:
        lines = [ln for ln in e2e.log_for(message_id) if ln.startswith(f"== {local_part} ")]
        assert lines, f"{local_part} was not deferred:\n{log}"
        return lines[0]

    # Through operators and items the header stays tainted, so the path it makes is refused.
    for local_part in ("lc", "chain", "reduce"):
        assert f"Tainted '{outside}" in reason(local_part) and "not permitted" in reason(local_part)
    # A hash of tainted data is tainted too: "m<md5>" is then only partly tainted, and refused.
    assert "Tainted" in reason("md5") and "not permitted" in reason("md5")
    # Never an argument of a command, whichever way ${run} expands.
    assert "Tainted arg 2 for ${run} expansion command" in reason("run")  # argv[2]: after /bin/echo -n
    assert "Tainted arg 0 for ${run} expansion command" in reason("preexpand")  # expanded whole: all of it
    # Never expanded a second time: the ${run} in the Subject never ran.
    assert "attempt to expand tainted string" in reason("expand")
    assert not pwned.exists()
    # Never a socket name.
    assert "Tainted socket name" in reason("socket")
    # Nothing escaped: no file outside, and the only mailbox is the one ${run} named from config text.
    assert not outside.exists()
    assert os.listdir(mail) == ["from-run"]
    assert f"=> runok <runok@{DOMAIN}>" in log


def test_run_can_be_switched_off(e2e: E2E) -> None:
    owner = e2e.user("owner", home=False)
    mail = e2e.root / "spool-mail"
    mail.mkdir()
    mail.chmod(0o1777)
    config = CONFIG.format(owner=owner.name, file=f"{mail}/${{run{{/bin/echo -n from-run}}}}")
    e2e.env.write_config("no_expansion_run_commands\n" + config)
    e2e.submit(f"From: root@{DOMAIN}\nSubject: x\n\nbody\n", "-odi", f"someone@{DOMAIN}")
    (message_id,) = e2e.received_ids()
    assert any("running a command is not permitted" in ln for ln in e2e.log_for(message_id)), e2e.log_for(message_id)
    assert os.listdir(mail) == []
