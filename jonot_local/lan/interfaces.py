"""Which addresses the server is announced on, given the address it listens on."""

from __future__ import annotations

import contextlib
import ipaddress

from ..addresses import lan_ipv4_addresses

_EVERY_IPV4 = ("0.0.0.0", "")  # noqa: S104
_EVERY_ADDRESS = ("::",)


def announced_addresses(host: str, configured: str = "") -> list[str]:
    """The addresses to announce the server on, most likely first.

    ``configured`` (comma-separated) wins when set. Otherwise: a server listening on
    one address is announced on that one (loopback only for ``127.0.0.1``); on
    ``0.0.0.0`` (every IPv4 interface) on every non-loopback IPv4 address; on ``::``
    on those and every global or unique-local IPv6 address too. Never raises.
    """
    if configured.strip():
        return [a.strip() for a in configured.split(",") if a.strip()]
    if host in _EVERY_IPV4:
        return lan_ipv4_addresses()
    if host in _EVERY_ADDRESS:
        return lan_ipv4_addresses() + lan_ipv6_addresses()
    if host == "localhost":
        return ["127.0.0.1"]
    return [host]


def lan_ipv6_addresses() -> list[str]:
    """This machine's global and unique-local IPv6 addresses (no loopback, no link-local)."""
    found: list[str] = []
    with contextlib.suppress(Exception):
        import ifaddr  # a dependency of zeroconf

        for adapter in ifaddr.get_adapters():
            for ip in adapter.ips:
                if not isinstance(ip.ip, tuple):
                    continue  # IPv4: (address, flowinfo, scope_id) tuples are IPv6
                address = ipaddress.ip_address(ip.ip[0])
                if not (address.is_loopback or address.is_link_local) \
                        and str(address) not in found:
                    found.append(str(address))
    return found
