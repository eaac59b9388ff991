"""The server's own URL as the caller reached it, for RetrieveURL and logsUrl."""

from __future__ import annotations

from starlette.requests import Request


def base_url(request: Request) -> str:
    """``scheme://host:port`` of this server.

    Some clients (dicomweb-client among them) send a Host header without the port;
    the bound port from the ASGI scope fills it in so the URLs we hand out work.
    """
    host = request.headers.get("host") or ""
    server = request.scope.get("server") or ("127.0.0.1", 80)
    if not host:
        host = f"{server[0]}:{server[1]}"
    elif ":" not in host.rsplit("]", 1)[-1] and server[1] not in (80, 443):
        host = f"{host}:{server[1]}"
    return f"{request.url.scheme}://{host}"
