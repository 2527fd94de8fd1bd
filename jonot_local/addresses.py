"""The machine's own LAN addresses, found without sending anything to the network.

``serve`` prints them so that whoever sets up a kiosk or a TV knows what to
type. Three sources, merged: the source address the kernel would use towards
private networks (a UDP socket's ``connect`` sends no packet), each
interface's IPv4 address (Linux), and elsewhere the host name's addresses
(Windows and macOS answer those from the interfaces).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
import sys

# One per private range: the kernel picks the source address of its route there.
_PROBES = ("10.255.255.255", "172.31.255.255", "192.168.255.255")
_SIOCGIFADDR = 0x8915


def lan_ipv4_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback, most likely first.

    Empty on a machine with only loopback. Never raises, never blocks on the network.
    """
    found: list[str] = []
    for source in (_route_sources, _interface_addresses, _host_name_addresses):
        with contextlib.suppress(OSError, ValueError):
            for address in source():
                if _usable(address) and address not in found:
                    found.append(address)
    return found


def _usable(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.version == 4 and not (ip.is_loopback or ip.is_unspecified or ip.is_multicast)


def _route_sources() -> list[str]:
    out = []
    for target in _PROBES:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.connect((target, 9))  # UDP: sets the route, sends nothing
            except OSError:
                continue  # no route there
            out.append(s.getsockname()[0])
    return out


def _interface_addresses() -> list[str]:
    if not sys.platform.startswith("linux"):
        return []
    import fcntl

    out = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(s.fileno(), _SIOCGIFADDR,
                                     struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue  # no IPv4 address on this interface
            out.append(socket.inet_ntoa(packed[20:24]))
    return out


def _host_name_addresses() -> list[str]:
    if sys.platform.startswith("linux"):
        return []  # the interfaces said it all; a host name look-up may wait on DNS
    infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET, socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]
