"""The client's address, through the proxies the `trusted_proxies` setting names.

Behind a proxy every request comes from the proxy; the client's address is in the header the
proxy adds (X-Forwarded-For, or RFC 7239 Forwarded, as `proxy_header` says). That header is
believed only when the request comes from a trusted proxy, and only as far as trusted hops go:
the chain is read from the right (the hop nearest this server), skipping trusted proxies, and
the first address that is not one is the client. Entries left of it were written by the client
itself and could say anything. A trusted hop that forwarded something other than an address
(`unknown`, an obfuscated name) ends the walk at that hop.

The application resolves each request once, as it routes it (`TrustedProxies.resolve`), so
`request.remote_ip` holds the client's address everywhere after: in handlers, in the SockJS
sessions and in the logs. `client_address` is how code asks for it.
"""

from __future__ import annotations

import ipaddress
import re

from tornado.httputil import HTTPHeaders, HTTPServerRequest

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# One `name=value` of a Forwarded element, the value a token or a quoted string, and what ends it.
_FORWARDED_PAIR = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,"\s]*)\s*([;,]|$)')


def client_address(request: HTTPServerRequest) -> str:
    """The address of the client that sent `request` (its peer's, unless a trusted proxy relayed it)."""
    return request.remote_ip or ""


def parse_networks(spec: str) -> list[IPNetwork]:
    """`10.0.0.1, 192.168.0.0/16, ::1` as networks; ValueError names an entry that is neither."""
    networks = []
    for entry in (part.strip() for part in spec.split(",")):
        if entry:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or a CIDR network") from None
    return networks


def _address(text: str) -> IPAddress | None:
    """An address as proxies write it: bare, quoted, `[v6]:port` or `v4:port`; None if it is none."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def _forwarded_for(values: list[str]) -> list[str] | None:
    """The `for=` of each element of Forwarded headers, in order ("" where an element has none);
    None when the header does not parse, so that nothing in it is believed."""
    hops: list[str] = []
    for value in values:
        position, current = 0, ""
        while position < len(value):
            match = _FORWARDED_PAIR.match(value, position)
            if match is None:
                return None
            name, raw, separator = match.groups()
            if name.lower() == "for":
                current = raw
            if separator != ";":
                hops.append(current)
                current = ""
            position = match.end()
    return hops


class TrustedProxies:
    """The proxies whose forwarding header is believed, and the header they set."""

    def __init__(self, networks: list[IPNetwork], header: str = "X-Forwarded-For"):
        self.networks = networks
        self.header = header.lower()

    def trusts(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)

    def hops(self, headers: HTTPHeaders) -> list[str] | None:
        """The header's addresses, the client's first and the nearest proxy's last."""
        if self.header == "forwarded":
            return _forwarded_for(headers.get_list("Forwarded"))
        return [hop for value in headers.get_list("X-Forwarded-For") for hop in value.split(",")]

    def client_of(self, peer: str, headers: HTTPHeaders) -> str:
        """The client's address, given the direct peer's and the request's headers."""
        current = _address(peer)
        if current is None or not self.trusts(current):
            return peer
        for hop in reversed(self.hops(headers) or []):
            previous = _address(hop)
            if previous is None:
                break
            current = previous
            if not self.trusts(current):
                break
        return str(current)

    def resolve(self, request: HTTPServerRequest) -> None:
        """Put the client's address in `request.remote_ip` (Tornado's own xheaders mode does the
        same, but believes the headers of any peer)."""
        if self.networks and request.remote_ip:
            request.remote_ip = self.client_of(request.remote_ip, request.headers)
