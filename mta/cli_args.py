"""Parsing the sendmail/Exim command line.

Options are read left to right as Exim reads them: an option's argument may
be joined (``-fuser@x``) or the next word (``-f user@x``); ``--`` ends the
options; the remaining words are recipients (or ids, addresses, strings,
depending on the mode).  Options that sendmail compatibility requires us to
accept but that mean nothing here are accepted and ignored, as Exim does.
"""

from __future__ import annotations

from mta import record
from mta.errors import MtaError


class UsageError(MtaError):
    """A command-line error; the message is printed and the exit status is 1."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@record.dataclass(slots=True)
class Invocation:
    """Everything the command line asked for."""

    mode: str = "bm"  # bm, t, bV, bP, be, bp, bt, bv, bvs, M, Mc, q, bd, bs, bi, version, help, ...
    mode_flags: str = ""  # e.g. "c" for -bpc, "ru" for -bpru, "rm" for -Mrm
    args: list[str] = record.field(default_factory=list)
    config_file: str | None = None
    macros: dict[str, str] = record.field(default_factory=dict)
    extract_recipients: bool = False  # -t
    dot_ends: bool = True  # cleared by -i / -oi
    sender: str | None = None  # -f / -r
    sender_name: str | None = None  # -F
    delivery_mode: str | None = None  # i (foreground), b (background), q (queue only), qs
    error_mode: str = "m"  # -oe<x>: m (mail, default), e, p, q, w
    verbose: bool = False
    debug: str | None = None  # the text after -d ("" for -d alone)
    debug_selectors: frozenset[str] = frozenset()  # mta.debug selectors that -d turned on
    dont_deliver: bool = False  # -N
    queue_interval: int | None = None  # -q<time>
    queue_flags: str = ""  # f, ff, i, l from -q...
    receive_protocol: str | None = None  # -p / -oMr
    host_address: str | None = None  # -oMa
    host_name: str | None = None  # -oMs
    helo_name: str | None = None  # -oMt? (ident) see options below
    sender_ident: str | None = None  # -oMt
    authenticator: str | None = None  # -oMaa
    auth_id: str | None = None  # -oMai
    auth_sender: str | None = None  # -oMas
    interface_address: str | None = None  # -oMi
    receive_timeout: str | None = None  # -or
    smtp_receive_timeout: str | None = None  # -os
    listen: str | None = None  # -oX
    pid_file: str | None = None  # -oP
    foreground: bool = False  # -bdf
    write_log: str | None = None  # -z text
    expansion_file: str | None = None  # -bem file
    terse: bool = False  # -n: sendmail's "no aliasing", ignored; with -bP, values without names (Exim)
    argv: list[str] = record.field(default_factory=list)  # as given, for handing on to the daemon
    expansion_message_id: str | None = None  # -Mset id (with -be: that spooled message's variables)
    json: bool = False  # --json with -bp (mailq --json): one JSON object per message
    spool_directory: str | None = None  # --spool DIR with -bp: that spool, without a configuration
    filter_user: str | None = None  # -bf FILE: a user's filter to test
    filter_system: str | None = None  # -bF FILE: a system filter to test
    filter_local_part: str | None = None  # -bfl, -bfd, -bfp, -bfs: the address a -bf test is for
    filter_domain: str | None = None
    filter_prefix: str | None = None
    filter_suffix: str | None = None


# What may follow -bp: r?[uai]? (a set, not a pattern: `mailq` need not import re).
_BP_FLAGS = frozenset({"", "r", "u", "a", "i", "ru", "ra", "ri"})
# Options that take an argument and are accepted for compatibility only.
_IGNORED_WITH_ARG = {"-B", "-h", "-O", "-X", "-L", "-oA", "-oL"}
# Options accepted and ignored (sendmail/AIX/smail compatibility).
_IGNORED = {"-m", "-om", "-U", "-x", "-Ac", "-Am", "-oo", "-G", "-oY", "-oPX", "-bnq"}


def parse_command_line(argv: list[str], program: str = "mta") -> Invocation:
    """Parse argv (without argv[0]); raise UsageError for anything unknown or malformed."""
    inv = Invocation(argv=list(argv))
    mode_set: list[str] = []

    def set_mode(mode: str, flags: str = "") -> None:
        mode_set.append(f"-{mode}{flags}" if mode not in ("version", "help") else f"--{mode}")
        inv.mode, inv.mode_flags = mode, flags

    i = 0

    def take_arg(opt: str, rest: str) -> str:
        nonlocal i
        if rest:
            return rest
        if i + 1 >= len(argv):
            raise UsageError(f"option {opt} needs an argument")
        i += 1
        return argv[i]

    while i < len(argv):
        word = argv[i]
        if word == "--":
            i += 1
            break
        if not word.startswith("-") or word == "-":
            break
        if word in ("--version",):
            set_mode("bV")
        elif word == "--help":
            set_mode("help")
        elif word == "--json":
            inv.json = True
        elif word == "--spool" or word.startswith("--spool="):
            inv.spool_directory = word[len("--spool=") :] if "=" in word else take_arg(word, "")
        elif word.startswith("--"):
            raise UsageError(f"unknown option {word}")
        elif word in _IGNORED:
            pass
        elif word == "-n":
            inv.terse = True
        elif word in _IGNORED_WITH_ARG:
            take_arg(word, "")
        elif word.startswith("-oB"):
            # Max messages per connection: accepted, with an optional number.
            if word == "-oB" and i + 1 < len(argv) and argv[i + 1].isdigit():
                i += 1
        elif any(word.startswith(p) and len(word) > len(p) for p in ("-B", "-h", "-L")):
            pass
        elif word.startswith("-C"):
            inv.config_file = take_arg("-C", word[2:])
        elif word.startswith("-D"):
            from mta.config.loader import parse_macro_override

            name, value = parse_macro_override(take_arg("-D", word[2:]))
            inv.macros[name] = value
        elif word.startswith(("-f", "-r")):
            inv.sender = take_arg(word[:2], word[2:])
        elif word.startswith("-F"):
            inv.sender_name = take_arg("-F", word[2:])
        elif word in ("-t", "-ti", "-it"):
            inv.extract_recipients = True
            if word != "-t":
                inv.dot_ends = False
        elif word in ("-i", "-oi", "-oitrue"):
            inv.dot_ends = False
        elif word in ("-v", "-ov"):
            inv.verbose = True
        elif word.startswith("-d"):
            # -d[+sel-sel...]; -dd is Exim's "-d, but not for the daemon's children": the same here.
            inv.debug = word[3:] if word.startswith("-dd") else word[2:]
            from mta.debug import SelectorError, parse

            try:
                inv.debug_selectors = parse(inv.debug)
            except SelectorError as exc:
                raise UsageError(str(exc)) from None
            # Exim's -d implies -v (the SMTP dialogue, log lines on stderr) unless -all took it away.
            inv.verbose = inv.verbose or "v" in inv.debug_selectors
        elif word == "-N":
            inv.dont_deliver = True
        elif word.startswith("-od"):
            flag = word[3:]
            if flag in ("f", "i"):
                inv.delivery_mode = "i"
            elif flag in ("b", "q", "qs"):
                inv.delivery_mode = flag
            else:
                raise UsageError(f"unknown delivery mode {word} (use -odb, -odf, -odi, -odq or -odqs)")
        elif word.startswith("-oe") or (word.startswith("-e") and len(word) == 3):
            flag = word[-1]
            if flag not in "mepqw":
                raise UsageError(f"unknown error mode {word} (use -oem, -oee, -oep, -oeq or -oew)")
            inv.error_mode = flag
        elif word.startswith("-oM"):
            _parse_oM(inv, word, take_arg)
        elif word.startswith("-or"):
            inv.receive_timeout = take_arg("-or", word[3:])
        elif word.startswith("-os"):
            inv.smtp_receive_timeout = take_arg("-os", word[3:])
        elif word.startswith("-oX"):
            inv.listen = take_arg("-oX", word[3:])
        elif word.startswith("-oP"):
            inv.pid_file = take_arg("-oP", word[3:])
        elif word.startswith("-p"):
            value = word[2:] or take_arg("-p", "")
            proto, _, host = value.partition(":")
            inv.receive_protocol = proto or None
            inv.host_name = host or None
        elif word.startswith("-z"):
            inv.write_log = take_arg("-z", word[2:])
            set_mode("z")
        elif word.startswith("-b"):
            _parse_b(inv, word, set_mode, take_arg)
        elif word.startswith("-q"):
            _parse_q(inv, word, set_mode)
        elif word.startswith("-R") or word.startswith("-S"):
            letter = word[1]
            flags = word[2:]
            if flags.strip("rf"):
                raise UsageError(f"unknown option {word}")
            set_mode(letter, flags)
            inv.args.append(take_arg(word, ""))
        elif word == "-Mset":
            inv.expansion_message_id = take_arg(word, "")
        elif word.startswith("-M"):
            flags = word[2:]
            if flags not in ("", "c", "f", "t", "g", "rm", "ar", "md", "mad", "es", "vb", "vh", "vl", "vc", "set"):
                raise UsageError(f"unknown option {word}")
            set_mode("M", flags)
        elif word == "-E" or word.startswith("-E"):
            pass  # internal "this is a bounce" marker; ignored from the command line
        else:
            raise UsageError(f"unknown option {word} (see man page; mta --help lists the common ones)")
        i += 1
    inv.args.extend(argv[i:])
    distinct = {m for m in mode_set if m not in ("-bm",)}
    if "-bd" in distinct and inv.queue_interval is not None:
        # -bd -q30m: a daemon that also starts queue runs every 30 minutes.
        distinct = {m for m in distinct if not m.startswith("-q")}
        inv.mode, inv.mode_flags = "bd", ""
    if len(distinct) > 1:
        raise UsageError(f"conflicting options: {' '.join(sorted(distinct))}")
    if inv.extract_recipients and inv.mode == "bm":
        inv.mode = "t"
    if inv.json and (inv.mode != "bp" or any(c in inv.mode_flags for c in "ci")):
        raise UsageError("--json is for listing the queue: mailq --json, or -bp/-bpr/-bpu --json")
    if inv.spool_directory is not None and (inv.mode != "bp" or inv.config_file is not None):
        raise UsageError(
            "--spool DIR is for listing a spool without a configuration: mailq --spool DIR, "
            "or -bp --spool DIR (not with -C)"
        )
    if inv.expansion_message_id is not None and inv.mode != "be":
        raise UsageError("-Mset is only for use with -be (expansion testing with a message's variables)")
    return inv


def _parse_b(inv: Invocation, word: str, set_mode, take_arg) -> None:  # type: ignore[no-untyped-def]
    rest = word[2:]
    if rest in ("f", "F", "fd", "fl", "fp", "fs"):
        _parse_bf(inv, word, set_mode, take_arg)
    elif rest in ("m", "M", "V", "P", "e", "t", "v", "vs", "s", "S", "i", "d", "df", "h", "hc", "rt", "rw"):
        if rest == "df":
            inv.foreground = True
            set_mode("bd")
        elif rest in ("h", "hc"):
            set_mode("bh", rest[1:])
            inv.args.append(take_arg(word, ""))
        else:
            set_mode("b" + rest)
    elif rest == "em":
        set_mode("be")
        inv.expansion_file = take_arg(word, "")
    elif rest.startswith("p"):
        # Exim's grammar: -bpc alone, or -bp[r][u|a|i] (-bpra, -bpru, -bpri ...).
        flags = rest[1:]
        if flags != "c" and flags not in _BP_FLAGS:
            raise UsageError(
                f"unknown option {word} (the listings are -bp, -bpa, -bpc, -bpi, -bpu, "
                "and -bpr, -bpra, -bpri, -bpru unsorted)"
            )
        set_mode("bp", flags)
    else:
        raise UsageError(f"unknown option {word}")


def _parse_bf(inv: Invocation, word: str, set_mode, take_arg) -> None:  # type: ignore[no-untyped-def]
    """-bf FILE, -bF FILE (both may be given: one test, system filter first), -bfd/-bfl/-bfp/-bfs VALUE."""
    value = take_arg(word, "")
    fields = {
        "-bf": "filter_user",
        "-bF": "filter_system",
        "-bfd": "filter_domain",
        "-bfl": "filter_local_part",
        "-bfp": "filter_prefix",
        "-bfs": "filter_suffix",
    }
    setattr(inv, fields[word], value)
    if word in ("-bf", "-bF") and inv.mode != "bf":
        set_mode("bf")


def _parse_q(inv: Invocation, word: str, set_mode) -> None:  # type: ignore[no-untyped-def]
    from mta.values import parse_time

    rest = word[2:]
    flags = ""
    while rest[:1] in ("q", "i", "f", "l"):
        flags += rest[0]
        rest = rest[1:]
    if rest.startswith("R") or rest.startswith("S"):
        raise UsageError(f"{word}: use -R or -S for selective queue runs")
    if rest:
        try:
            inv.queue_interval = parse_time(rest)
        except ValueError as exc:
            raise UsageError(f"{word}: {exc}") from None
    inv.queue_flags = flags
    set_mode("q", flags)


def _parse_oM(inv: Invocation, word: str, take_arg) -> None:  # type: ignore[no-untyped-def]
    which = word[3:]
    targets = {
        "a": "host_address",
        "aa": "authenticator",
        "ai": "auth_id",
        "as": "auth_sender",
        "i": "interface_address",
        "r": "receive_protocol",
        "s": "host_name",
        "t": "sender_ident",
    }
    if which == "m":
        take_arg(word, "")  # -oMm message reference: accepted, unused
        return
    attr = targets.get(which)
    if attr is None:
        raise UsageError(f"unknown option {word}")
    setattr(inv, attr, take_arg(word, ""))
