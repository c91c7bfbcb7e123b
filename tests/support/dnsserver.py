"""A small authoritative DNS server on loopback, for tests.

Built with dnspython: it answers from a Python description of records,

    {
        "example.org": {"MX": [(10, "mx1.example.org"), (20, "mx2.example.org")]},
        "mx1.example.org": {"A": ["127.0.0.2"], "AAAA": ["::2"]},
        "alias.example.org": {"CNAME": ["mx1.example.org"]},
    }

on 127.0.0.1, on one ephemeral port for both UDP and TCP, from a background
thread.  Unknown names get NXDOMAIN, known names (or empty non-terminals, such
as ``example.org`` when only ``mx1.example.org`` is listed) without the asked
type get NODATA.  CNAMEs are followed inside the data.  A UDP answer larger
than the client's buffer (512 octets without EDNS) is sent truncated (TC), so
the client retries over TCP as a real server would make it.

Faults for tests: `never_answer(name)` drops queries (the client times out),
`set_rcode(name, "SERVFAIL")` / `servfail(name)` answers with an error code;
the name "*" stands for every name.  `answer_together(names)` holds the UDP
answers for those names until a query for each has arrived: a client that
asks them one at a time times out, one that asks them at once is answered
(an event check for concurrency, with no clock in the test).  Answers list the records of an rrset in
random order, as dnspython renders them (and as many servers do).
Every query is logged (`queries()`, `query_count()`), so a test can check
what the resolver really asked.

Nothing here imports mta: the server is usable by any test.

    with DnsTestServer({"example.org": {"A": ["127.0.0.2"]}}) as server:
        server.address        # ("127.0.0.1", port)
        server.server_spec    # "127.0.0.1.<port>", Exim's form for dns_servers
"""

from __future__ import annotations

import selectors
import socket
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

# The data a test describes: name -> record type -> values.  A value is the
# record's text form ("127.0.0.2", "10 mx1.example.org") or, for convenience,
# a tuple of its fields ((10, "mx1.example.org")).  Names are absolute whether
# or not they end in a dot.
RecordValue = str | int | tuple[str | int, ...]
ZoneData = Mapping[str, Mapping[str, Iterable[RecordValue]]]

_TCP_IDLE_TIMEOUT = 2.0
_MAX_CNAME_CHAIN = 8
# The name given as "*" to never_answer/set_rcode: every name.
_ANY_NAME = dns.name.Name((b"*",))


@dataclass(frozen=True, slots=True)
class LoggedQuery:
    """One query the server received: lower-case name without the final dot."""

    name: str
    rdtype: str
    transport: str  # "udp" or "tcp"


def _absolute(name: str) -> dns.name.Name:
    return dns.name.from_text(name, origin=dns.name.root)


def _key(name: str | dns.name.Name) -> dns.name.Name:
    # dns.name.Name compares case-insensitively, but hashes need one case.
    if isinstance(name, str):
        name = _absolute(name)
    return name.canonicalize()


def _value_text(rdtype: dns.rdatatype.RdataType, value: RecordValue) -> str:
    if rdtype == dns.rdatatype.TXT and isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, tuple):
        return " ".join(str(part) for part in value)
    return str(value)


def build_zone(
    records: ZoneData, ttl: int
) -> dict[dns.name.Name, dict[dns.rdatatype.RdataType, dns.rrset.RRset]]:
    """Turn a test's description into rrsets; raises ValueError for junk."""
    zone: dict[dns.name.Name, dict[dns.rdatatype.RdataType, dns.rrset.RRset]] = {}
    for owner_text, types in records.items():
        try:
            owner = _key(owner_text)
        except dns.exception.DNSException as exc:
            raise ValueError(f"bad owner name {owner_text!r}: {exc}") from exc
        node = zone.setdefault(owner, {})
        for type_text, values in types.items():
            try:
                rdtype = dns.rdatatype.from_text(type_text)
            except dns.exception.DNSException as exc:
                raise ValueError(f"bad record type {type_text!r}") from exc
            rrset = dns.rrset.RRset(owner, dns.rdataclass.IN, rdtype)
            rrset.update_ttl(ttl)
            for value in values:
                text = _value_text(rdtype, value)
                try:
                    rdata = dns.rdata.from_text(
                        dns.rdataclass.IN, rdtype, text, origin=dns.name.root, relativize=False
                    )
                except dns.exception.DNSException as exc:
                    raise ValueError(f"bad {type_text} value {value!r} for {owner_text}: {exc}") from exc
                rrset.add(rdata)
            node[rdtype] = rrset
    return zone


class DnsTestServer:
    """An authoritative DNS server for tests; see the module docstring."""

    def __init__(self, records: ZoneData | None = None, *, ttl: int = 60, host: str = "127.0.0.1") -> None:
        self.host = host
        self.ttl = ttl
        self._lock = threading.Lock()
        self._zone = build_zone(records or {}, ttl)
        # (name, rdtype or None for every type) -> None (drop) or an rcode
        self._faults: dict[tuple[dns.name.Name, dns.rdatatype.RdataType | None], dns.rcode.Rcode | None] = {}
        self._log: list[LoggedQuery] = []
        self._together: set[dns.name.Name] = set()  # names whose answers wait for each other
        self._held: list[tuple[bytes, object]] = []  # (answer, peer) held back for _together
        self._asked: set[dns.name.Name] = set()
        self.errors: list[str] = []  # internal failures of this server, for assertions
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._tcp_threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self.port = 0

    # -- life cycle ---------------------------------------------------------

    def start(self) -> DnsTestServer:
        if self._thread is not None:
            raise RuntimeError("DNS test server already started")
        self._udp, self._tcp = self._bind_pair()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._serve, name=f"dns-test-server:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stopping.set()
        assert self._wake_w is not None
        self._wake_w.send(b"x")
        self._thread.join(timeout=5)
        for worker in self._tcp_threads:
            worker.join(timeout=_TCP_IDLE_TIMEOUT + 1)
        self._tcp_threads.clear()
        for sock in (self._udp, self._tcp, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._udp = self._tcp = self._wake_r = self._wake_w = None
        self._thread = None

    def __enter__(self) -> DnsTestServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def server_spec(self) -> str:
        """The server in Exim's ``ip.port`` form, as dns_servers takes it."""
        return f"{self.host}.{self.port}"

    # -- what to serve --------------------------------------------------------

    def set_records(self, records: ZoneData) -> None:
        """Replace all data (faults and the query log are kept)."""
        zone = build_zone(records, self.ttl)
        with self._lock:
            self._zone = zone

    def add_records(self, records: ZoneData) -> None:
        """Add or replace the given (name, type) rrsets."""
        zone = build_zone(records, self.ttl)
        with self._lock:
            for owner, node in zone.items():
                self._zone.setdefault(owner, {}).update(node)

    def never_answer(self, name: str, rdtype: str | None = None) -> None:
        """Drop queries for `name` ("*": any name) of `rdtype` (None: any type): the client times out."""
        self._set_fault(name, rdtype, None)

    def set_rcode(self, name: str, rcode: str, rdtype: str | None = None) -> None:
        """Answer queries for `name` ("*": any name) with an error code ("SERVFAIL", "REFUSED" ...)."""
        self._set_fault(name, rdtype, dns.rcode.from_text(rcode))

    def servfail(self, name: str, rdtype: str | None = None) -> None:
        self.set_rcode(name, "SERVFAIL", rdtype)

    def answer_together(self, names: Iterable[str]) -> None:
        """Hold UDP answers for `names` until each of them has been asked, then send them all."""
        with self._lock:
            self._together = {_key(name) for name in names}
            self._held.clear()
            self._asked.clear()

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _set_fault(self, name: str, rdtype: str | None, rcode: dns.rcode.Rcode | None) -> None:
        owner = _ANY_NAME if name == "*" else _key(name)
        key = (owner, dns.rdatatype.from_text(rdtype) if rdtype else None)
        with self._lock:
            self._faults[key] = rcode

    # -- what was asked -------------------------------------------------------

    def queries(self) -> list[LoggedQuery]:
        with self._lock:
            return list(self._log)

    def query_count(self, name: str | None = None, rdtype: str | None = None) -> int:
        wanted = name.lower().rstrip(".") if name is not None else None
        return sum(
            1
            for entry in self.queries()
            if (wanted is None or entry.name == wanted) and (rdtype is None or entry.rdtype == rdtype.upper())
        )

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    # -- sockets ----------------------------------------------------------------

    def _bind_pair(self) -> tuple[socket.socket, socket.socket]:
        """A UDP socket on an ephemeral port and a TCP listener on the same port."""
        last_error: OSError | None = None
        for _ in range(50):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((self.host, 0))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                tcp.bind((self.host, port))
            except OSError as exc:
                last_error = exc
                udp.close()
                tcp.close()
                continue
            tcp.listen(16)
            self.port = port
            return udp, tcp
        raise RuntimeError(f"could not bind UDP and TCP to one port: {last_error}")

    def _serve(self) -> None:
        assert self._udp is not None and self._tcp is not None and self._wake_r is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._udp, selectors.EVENT_READ, "udp")
            selector.register(self._tcp, selectors.EVENT_READ, "tcp")
            selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.data == "udp":
                        self._serve_udp(self._udp)
                    elif key.data == "tcp":
                        self._accept_tcp(self._tcp)

    def _serve_udp(self, sock: socket.socket) -> None:
        try:
            wire, peer = sock.recvfrom(65535)
        except OSError:
            return
        query, response = self._respond(wire, "udp")
        if response is None or query is None:
            return
        max_size = max(512, query.payload) if query.edns >= 0 else 512
        try:
            out = response.to_wire(max_size=max_size)
        except dns.exception.TooBig:
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.AA | dns.flags.TC
            out = truncated.to_wire()
        except dns.exception.DNSException as exc:
            out = self._render_failure(query, exc)
        qname = _key(query.question[0].name) if query.question else None
        with self._lock:
            if qname is not None and qname in self._together:
                self._held.append((out, peer))
                self._asked.add(qname)
                if self._asked < self._together:
                    return
                ready, self._held = self._held, []
                self._together, self._asked = set(), set()
            else:
                ready = [(out, peer)]
        for answer, to in ready:
            try:
                sock.sendto(answer, to)
            except OSError:
                continue

    def _accept_tcp(self, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        worker = threading.Thread(target=self._serve_tcp, args=(conn,), daemon=True)
        self._tcp_threads = [t for t in self._tcp_threads if t.is_alive()]
        self._tcp_threads.append(worker)
        worker.start()

    def _serve_tcp(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(_TCP_IDLE_TIMEOUT)
            while not self._stopping.is_set():
                header = _recv_exact(conn, 2)
                if header is None:
                    return
                wire = _recv_exact(conn, int.from_bytes(header, "big"))
                if wire is None:
                    return
                query, response = self._respond(wire, "tcp")
                if response is None or query is None:
                    return  # a dropped query: close, as a broken server would
                try:
                    out = response.to_wire()
                except dns.exception.DNSException as exc:
                    out = self._render_failure(query, exc)
                try:
                    conn.sendall(len(out).to_bytes(2, "big") + out)
                except OSError:
                    return

    # -- answers ------------------------------------------------------------------

    def _render_failure(self, query: dns.message.Message, exc: dns.exception.DNSException) -> bytes:
        # A bug in the test data or in this server: answer SERVFAIL rather than
        # let the thread die, and keep the reason for the test to see.
        self.errors.append(f"cannot render answer to {query.question}: {exc}")
        failure = dns.message.make_response(query)
        failure.set_rcode(dns.rcode.SERVFAIL)
        return failure.to_wire()

    def _respond(
        self, wire: bytes, transport: str
    ) -> tuple[dns.message.Message | None, dns.message.Message | None]:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None, None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return query, response
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return query, response
        question = query.question[0]
        qname = _key(question.name)
        rdtype = dns.rdatatype.RdataType.make(question.rdtype)
        with self._lock:
            self._log.append(
                LoggedQuery(qname.to_text(omit_final_dot=True), dns.rdatatype.to_text(rdtype), transport)
            )
            for fault_key in ((qname, rdtype), (qname, None), (_ANY_NAME, rdtype), (_ANY_NAME, None)):
                if fault_key in self._faults:
                    rcode = self._faults[fault_key]
                    if rcode is None:
                        return query, None
                    response.set_rcode(rcode)
                    return query, response
            self._fill(response, qname, rdtype)
        return query, response

    def _fill(
        self, response: dns.message.Message, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> None:
        name = qname
        for _ in range(_MAX_CNAME_CHAIN):
            node = self._zone.get(name)
            if node is None:
                if not self._has_descendants(name):
                    response.set_rcode(dns.rcode.NXDOMAIN)
                return  # NXDOMAIN, or NODATA for an empty non-terminal
            if rdtype in node:
                response.answer.append(node[rdtype])
                return
            cname = node.get(dns.rdatatype.CNAME)
            if cname is None or rdtype == dns.rdatatype.CNAME:
                return  # NODATA
            response.answer.append(cname)
            name = _key(next(iter(cname)).target)

    def _has_descendants(self, name: dns.name.Name) -> bool:
        return any(owner != name and owner.is_subdomain(name) for owner in self._zone)


def _recv_exact(conn: socket.socket, count: int) -> bytes | None:
    chunks: list[bytes] = []
    remaining = count
    while remaining:
        try:
            chunk = conn.recv(remaining)
        except OSError:
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


__all__ = ["DnsTestServer", "LoggedQuery", "RecordValue", "ZoneData", "build_zone"]
