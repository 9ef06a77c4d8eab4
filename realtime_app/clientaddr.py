"""The address of the client behind a request: every check keyed on it (SockJS sessions bound
to their client, per-address caps) asks here, so all of them agree on who the client is."""

from __future__ import annotations

from tornado.httputil import HTTPServerRequest


def client_address(request: HTTPServerRequest) -> str:
    """The client's IP address: the peer of the TCP connection."""
    return str(request.remote_ip)
