"""Which sockets the daemon listens on, and binding them (Exim's daemon_smtp_ports, local_interfaces, -oX).

``local_interfaces`` lists addresses, each optionally with its own port
(``127.0.0.1.2525``, ``[::1]:2525``, or ``<; ::1.2525``); an address without
one gets every port of ``daemon_smtp_ports``.  ``-oX`` replaces the ports
(``-oX 2525`` or ``-oX 25:587``) or, when it holds addresses, the whole set
(``-oX 127.0.0.1.2525``, ``-oX '<; [::1]:2525'``).  A port in
``tls_on_connect_ports`` gets TLS at once (SMTPS, port 465).

Binding happens in the master, as root when started as root, before any
process drops its privileges; a port that cannot be bound stops start-up
with the address, the port and the reason.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

from mta import record
from mta.errors import ConfigError
from mta.values import split_list


@record.dataclass(frozen=True, slots=True)
class ListenAddress:
    address: str  # "0.0.0.0", "::", "127.0.0.1"
    port: int
    tls_on_connect: bool = False

    def __str__(self) -> str:
        return f"[{self.address}]:{self.port}"


def _port(text: str, what: str) -> int:
    text = text.strip()
    if text.isdigit():
        port = int(text)
    else:
        try:
            port = socket.getservbyname(text, "tcp")
        except OSError:
            raise ConfigError(f'{what}: "{text}" is not a port number or a known service name') from None
    if not 0 < port < 65536:
        raise ConfigError(f"{what}: port {port} is out of range")
    return port


def _split_address_port(item: str) -> tuple[str, int | None]:
    """"[::1]:2525", "127.0.0.1.2525", "::1.2525" (Exim's dot form), "::" -> (address, port or None)."""
    item = item.strip()
    if item.startswith("["):
        close = item.find("]")
        if close < 0:
            raise ConfigError(f'local_interfaces: "{item}" has no closing ]')
        address, rest = item[1:close], item[close + 1 :]
        return address, int(rest[1:]) if rest.startswith((":", ".")) and rest[1:].isdigit() else None
    try:
        ipaddress.ip_address(item)
        return item, None
    except ValueError:
        pass
    address, dot, port = item.rpartition(".")
    if dot and port.isdigit():
        try:
            ipaddress.ip_address(address)
            return address, int(port)
        except ValueError:
            pass
    raise ConfigError(f'local_interfaces: "{item}" is not an IP address')


def listen_addresses(main: object, override: str | None = None) -> list[ListenAddress]:
    """The daemon's sockets from the configuration and -oX (`override`)."""
    ports_text: str = main.daemon_smtp_ports  # type: ignore[attr-defined]
    interfaces_text: str = main.local_interfaces  # type: ignore[attr-defined]
    if override:
        # Addresses have a dot, a bracket, a list separator or "::"; a list of ports has none.
        if any(mark in override for mark in (".", "[", "<", "::")):
            interfaces_text = override
        else:
            ports_text = override.replace(",", ":")
    ports = [_port(p, "daemon_smtp_ports") for p in split_list(ports_text) if p.strip()]
    tls_ports = {_port(p, "tls_on_connect_ports") for p in split_list(getattr(main, "tls_on_connect_ports", ""))
                 if p.strip()}
    result: list[ListenAddress] = []
    for item in split_list(interfaces_text):
        if not item.strip():
            continue
        address, port = _split_address_port(item)
        for each in [port] if port is not None else ports:
            if each is None:
                continue
            entry = ListenAddress(address, each, each in tls_ports)
            if entry not in result:
                result.append(entry)
    if not result:
        raise ConfigError("the daemon has nothing to listen on (local_interfaces and daemon_smtp_ports are empty)")
    return result


def bind_listeners(addresses: list[ListenAddress], backlog: int = 1024) -> list[tuple[ListenAddress, socket.socket]]:
    """Bind and listen on every address; ConfigError naming the first one that fails.

    An IPv6 wildcard is bound IPv6-only, so that it and 0.0.0.0 can share a
    port; an IPv6 address on a host without IPv6 is skipped with no error
    when it is the wildcard (Exim does the same)."""
    bound: list[tuple[ListenAddress, socket.socket]] = []
    try:
        for entry in addresses:
            family = socket.AF_INET6 if ":" in entry.address else socket.AF_INET
            try:
                sock = socket.socket(family, socket.SOCK_STREAM)
            except OSError as exc:
                if family == socket.AF_INET6 and entry.address == "::" and exc.errno == errno.EAFNOSUPPORT:
                    continue
                raise
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((entry.address, entry.port))
                sock.listen(backlog)
                sock.setblocking(False)
            except OSError as exc:
                sock.close()
                if family == socket.AF_INET6 and entry.address == "::" and exc.errno == errno.EADDRNOTAVAIL:
                    continue
                raise ConfigError(f"cannot listen on {entry}: {exc.strerror}") from None
            bound.append((entry, sock))
    except BaseException:
        for _entry, sock in bound:
            sock.close()
        raise
    if not bound:
        raise ConfigError("the daemon could not listen on any address")
    return bound
