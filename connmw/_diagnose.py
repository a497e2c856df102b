"""Diagnosis: a proxy in front that closes every upstream connection.

Facts
-----
- nginx's ``proxy_pass`` speaks HTTP/1.0 to the upstream and sends
  ``Connection: close`` unless told otherwise (``proxy_http_version`` defaults to
  1.0; ``proxy_set_header Connection close`` is a default): every request
  reaches the application on a new connection that closes after one response.
  Upstream connections persist only with ``keepalive N;`` in the ``upstream``
  block plus ``proxy_http_version 1.1;`` and ``proxy_set_header Connection "";``
  (nginx ``ngx_http_upstream_module``, ``keepalive``).
- HAProxy keeps server connections for reuse (``http-reuse safe``, the default
  since 2.0) unless ``option httpclose`` or ``option http-server-close``
  closes them (both send ``Connection: close`` to the server).
- RFC 9112 §9.3: an HTTP/1.0 request without ``keep-alive``, or any request
  with ``close``, ends its connection after the response. When every request
  does, connmw's own closes (caps, age, rules, drain) never get to act, and
  every decision is ``client`` or ``http-1.0``.

Only the first :data:`WATCH` HTTP/1.x requests are looked at; from the first
request that keeps its connection, from another peer, or after the verdict, the
adapters stop calling in (one attribute read per request).
"""

from __future__ import annotations

import threading

__all__ = ["WATCH", "ProxyWatch"]

#: How many first requests must all close, from one peer, for the diagnosis.
WATCH = 20

FIX = (
    "nginx: `keepalive 16;` in the upstream block, and `proxy_http_version 1.1;` plus "
    '`proxy_set_header Connection "";` in the location; HAProxy: keep `http-reuse` on '
    "(the default) and remove `option httpclose` and `option http-server-close`"
)


class ProxyWatch:
    """Watches the first requests; :meth:`see` returns the warning once, when due."""

    __slots__ = ("_http10", "_lock", "_peer", "_seen", "active")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._peer: object = None
        self._seen = 0
        self._http10 = True
        #: False once the verdict is in: the adapters stop calling.
        self.active = True

    def see(self, version: int, client_close: bool, client_keep_alive: bool, peer: object) -> str | None:
        with self._lock:
            if not self.active:
                return None
            closing = client_close or (version == 10 and not client_keep_alive)
            if not closing or version >= 20 or peer is None or (self._seen and peer != self._peer):
                self.active = False
                return None
            self._peer = peer
            self._seen += 1
            self._http10 = self._http10 and version == 10
            if self._seen < WATCH:
                return None
            self.active = False
        what = "as HTTP/1.0 without keep-alive" if self._http10 else "with Connection: close"
        return (
            f"connmw: the first {WATCH} requests all came from {peer} {what}, each on a new "
            "connection: a proxy in front closes every upstream connection (nginx's default "
            "proxy_pass does), so connmw's own closes (request caps, age, rules, drain) and "
            f"Keep-Alive never act. To let connections persist: {FIX}."
        )
