"""The engine both adapters share: options, connection table, load, and the
glue from plain request and response facts to :func:`connmw._decide.decide`.

It still never sees a scope, an environ, ``send`` or ``start_response``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import Any

from ._advertise import IdleTimeoutReader, KeepAlive
from ._decide import KEEP, Decision, decide
from ._diagnose import ProxyWatch
from ._h2load import H2Load
from ._headers import PROTECTED_REQUEST_HEADERS, connection_tokens, nominated_to_strip
from ._policy import Options, Rule, RuleMatcher
from ._state import ConnectionTable, ConnState, Load, LoopLoad
from ._stats import Counters

__all__ = ["Engine", "RequestFacts", "logger"]

logger = logging.getLogger("connmw")


class RequestFacts:
    """What connmw knows about one request; handed to ``on_decision``.

    It also lives in the ASGI scope / WSGI environ under the ``"connmw"`` key, where
    :func:`connmw.request_close` finds it (copies of a scope share it).
    """

    # No __slots__: the class attributes below are the defaults, so a request pays only
    # for the facts that differ from them (this object is made for every request).
    client_close: bool = False
    client_keep_alive: bool = False
    key: Hashable | None = None
    conn: ConnState | None = None
    rules: tuple[Rule, ...] = ()
    handler_reason: str | None = None
    decision: Decision | None = None
    body_hook: Callable[[Any], None] | None = None
    #: WSGI: what makes the close real once the body is written (uWSGI).
    after_body: Callable[[], None] | None = None

    def __init__(self, version: int, method: str, path: str) -> None:
        self.version = version
        self.method = method
        self.path = path

    @property
    def handler_close(self) -> bool:
        return self.handler_reason is not None

    @property
    def request_count(self) -> int | None:
        """Which request on its connection this is (1-based), when connmw tracks it."""
        return None if self.conn is None else self.conn.count

    def __repr__(self) -> str:
        return (
            f"RequestFacts(version={self.version}, method={self.method!r}, path={self.path!r}, "
            f"client_close={self.client_close}, request_count={self.request_count}, "
            f"decision={self.decision!r})"
        )


class Engine:
    """Turns request and response facts into a :class:`Decision`."""

    __slots__ = (
        "_age_limited",
        "_clock",
        "_close_on_status",
        "_closed",
        "_hard",
        "_http2",
        "_keep_alive",
        "_kept",
        "_loaded",
        "_max_tokens",
        "_on_decision",
        "_pressure",
        "_proxy_watch",
        "_random",
        "_rules",
        "_simple",
        "_soft",
        "_warned",
        "advertises",
        "counters",
        "decision_header",
        "h2",
        "keep_fast",
        "load",
        "match_rules",
        "options",
        "plain",
        "protected",
        "strip_nominated",
        "table",
        "track_in_flight",
        "watching",
    )

    def __init__(self, options: Options, *, threaded: bool = True) -> None:
        """``threaded``: requests may run on several threads at once (WSGI); an ASGI
        middleware's run on one event loop, so its in-flight count takes no lock."""
        self.options = options
        self._rules = options.rules
        #: The rules that may decide for a method and a path, in order.
        self.match_rules = RuleMatcher(options.rules)
        self._close_on_status = options.close_on_status
        self._clock = options.clock
        self._random = options.random
        self._pressure = options.pressure
        self._on_decision = options.on_decision
        self._max_tokens = options.max_connection_tokens
        self._soft = options.overload_soft_limit
        self._hard = options.overload_hard_limit
        self._age_limited = options.max_connection_age is not None
        #: Overload limits or pressure: each response reads the load.
        self._loaded = self._soft is not None or self._pressure is not None
        self.track_in_flight = self._soft is not None
        self.table: ConnectionTable | None = None
        if options.tracks_connections:
            self.table = ConnectionTable(
                max_requests=options.max_requests_per_connection,
                max_requests_jitter=options.max_requests_jitter,
                max_age=options.max_connection_age,
                max_age_jitter=options.max_connection_age_jitter,
                idle_timeout=options.connection_idle_timeout,
                cap=options.max_tracked_connections,
                random=self._random,
            )
        self.load = Load() if threaded else LoopLoad()
        self._warned: set[str] = set()
        self.counters = Counters()
        self._proxy_watch = ProxyWatch()
        #: The first requests are still watched for a proxy that closes every connection.
        self.watching = True
        self._kept = self.counters.kept
        self._http2 = self.counters.http2
        self._closed = self.counters.closed
        #: HTTP/2 connections connmw can retire with GOAWAY.
        self.h2 = H2Load(
            options,
            self.load,
            self._overload
            if options.overload_http2 and (self._soft is not None or self._pressure is not None)
            else None,
            self.warn_once,
            self.counters.goaways,
        )
        #: Nothing but the client, the protocol, the application and the status can
        #: close: :meth:`respond` can answer the common case without the full table.
        self._simple = (
            self.table is None and self._soft is None and self._pressure is None and self._on_decision is None
        )
        #: The adapters' own switches, read once per response.
        self.advertises = options.keep_alive_timeout is not None
        self._keep_alive = KeepAlive(options.keep_alive_timeout, self.warn_once)
        self.decision_header: bytes | None = (
            None if options.decision_header is None else options.decision_header.encode("ascii")
        )
        self.strip_nominated = options.strip_nominated_request_headers
        self.protected = PROTECTED_REQUEST_HEADERS | {
            name.encode("ascii") for name in options.protected_request_headers
        }
        #: ``begin`` has nothing to do beyond reading the client's tokens.
        self.plain = self.table is None and not self._rules and not self.track_in_flight
        #: A kept HTTP/1.1 response needs no edit and no bookkeeping.
        self.keep_fast = self._simple and self.decision_header is None and not self.advertises

    # -- request side -----------------------------------------------------------

    def begin(
        self,
        facts: RequestFacts,
        connection_values: list[bytes] | None,
        key: Hashable | None,
    ) -> None:
        """Record a new request: the client's tokens, its connection, its rules, the load."""
        if connection_values is not None:
            self.read_client(facts, connection_values)
        if key is not None:
            facts.key = key
            table = self.table
            if table is not None and facts.version < 20:
                facts.conn = table.begin(key, self._clock())
        if self._rules:
            facts.rules = self.match_rules(facts.method, facts.path)
        if self.track_in_flight:
            self.load.enter()

    def watch(self, facts: RequestFacts, peer: object) -> None:
        """Look at one of the first requests for the proxy diagnosis (see :mod:`connmw._diagnose`)."""
        watch = self._proxy_watch
        message = watch.see(facts.version, facts.client_close, facts.client_keep_alive, peer)
        self.watching = watch.active
        if message is not None:
            self.warn_once("proxy-closes", "%s", message)

    def nominated(self, connection_values: list[bytes]) -> set[bytes]:
        """Request headers to strip for ``strip_nominated_request_headers``."""
        return nominated_to_strip(connection_values, self.protected, self._max_tokens)

    def read_client(self, facts: RequestFacts, connection_values: list[bytes]) -> None:
        """Record what the client's ``Connection`` fields ask for."""
        tokens = connection_tokens(connection_values, self._max_tokens)
        if b"close" in tokens:
            facts.client_close = True
        if b"keep-alive" in tokens:
            facts.client_keep_alive = True

    def end(self, facts: RequestFacts) -> None:
        """The request is over (response sent or the application failed)."""
        if self.track_in_flight:
            self.load.leave()

    # -- response side ----------------------------------------------------------

    def respond(
        self,
        facts: RequestFacts,
        status: int,
        app_close: bool = False,
        known_length: bool = True,
        http10_keep_alive: bool = False,
        server_close: bool = False,
    ) -> Decision:
        if self._simple and not (app_close or server_close) and self.keeps_plainly(facts, status):
            return KEEP
        rule = None
        for candidate in facts.rules:
            if candidate.status is None or status in candidate.status:
                rule = candidate
                break
        conn = facts.conn
        requests_exhausted = False
        age_exhausted = False
        now = 0.0
        if conn is not None:
            requests_exhausted = conn.max_requests > 0 and conn.count >= conn.max_requests
            if self._age_limited:
                now = self._clock()
                age_exhausted = now >= conn.expires
        load = self.load
        drain = 0.0
        if load.drain_since is not None:
            drain = load.drain_probability(now or self._clock())
        overload = self._overload() if self._loaded else 0.0
        if (
            # Nothing that could close: KEEP without decide()'s sixteen keywords (which
            # cost more than the rest of this method). test_engine checks that decide()
            # agrees on every input this lets through.
            facts.version == 11
            and rule is None
            and not (facts.client_close or app_close or server_close or requests_exhausted or age_exhausted)
            and facts.handler_reason is None
            and status not in self._close_on_status
            and drain == 0.0
            and overload == 0.0
        ):
            decision = KEEP
        else:
            decision = decide(
                version=facts.version,
                status=status,
                client_close=facts.client_close,
                client_keep_alive=facts.client_keep_alive,
                known_length=known_length,
                http10_keep_alive=http10_keep_alive,
                app_close=app_close,
                handler_close=facts.handler_reason is not None,
                rule=rule,
                close_on_status=self._close_on_status,
                requests_exhausted=requests_exhausted,
                age_exhausted=age_exhausted,
                server_close=server_close,
                drain=drain,
                overload=overload,
                draw=self._random,
            )
        facts.decision = decision
        if decision.close:
            next(self._closed[decision.reason])  # type: ignore[index]
            if facts.key is not None and self.table is not None:
                self.table.forget(facts.key)
        else:
            next(self._http2 if facts.version >= 20 else self._kept)
        if self._on_decision is not None:
            self._report(facts, decision)
        if decision is not KEEP and logger.isEnabledFor(logging.DEBUG):
            if decision.reason == "handler" and facts.handler_reason not in (None, "handler"):
                logger.debug("close %s %s: handler (%s)", facts.method, facts.path, facts.handler_reason)
            else:
                logger.debug("close %s %s: %s", facts.method, facts.path, decision.reason)
        return decision

    def respond_multiplexed(self, facts: RequestFacts) -> Decision:
        """An HTTP/2 or HTTP/3 response: the server manages the connection (RFC 9113
        §8.2.2, RFC 9114 §4.2), so no response closes it; retiring the connection
        with GOAWAY is decided per stream, when it is admitted."""
        facts.decision = KEEP
        next(self._http2)
        if self._on_decision is not None:
            self._report(facts, KEEP)
        return KEEP

    def _report(self, facts: RequestFacts, decision: Decision) -> None:
        try:
            self._on_decision(facts, decision)  # type: ignore[misc]
        except Exception:
            logger.exception("connmw: the on_decision callback raised; the response goes on")

    def keeps_plainly(self, facts: RequestFacts, status: int) -> bool:
        """The common path, for an engine with no load option on (``_simple``) and a
        response whose application said nothing about the connection: True, and the
        decision recorded, when :func:`decide` would find no reason to close."""
        if (
            facts.version == 11
            and not facts.client_close
            and facts.handler_reason is None
            and not facts.rules
            and status not in self._close_on_status
            and self.load.drain_since is None
        ):
            facts.decision = KEEP
            next(self._kept)
            return True
        return False

    def _overload(self) -> float:
        p = 0.0
        soft, hard = self._soft, self._hard
        if soft is not None and hard is not None:
            n = self.load.in_flight
            if n >= hard:
                return 1.0
            if n > soft:
                p = (n - soft) / (hard - soft)
        pressure = self._pressure
        if pressure is not None:
            try:
                q = float(pressure())
            except Exception:
                self.warn_once("pressure", "connmw: the pressure callable raised; treated as 0", exc=True)
                q = 0.0
            if q > p:
                p = min(q, 1.0)
        return p

    def keep_alive_value(
        self,
        facts: RequestFacts,
        server: IdleTimeoutReader | None = None,
        handle: Any = None,
        find: Callable[[Any], IdleTimeoutReader | None] | None = None,
    ) -> bytes | None:
        """The ``Keep-Alive`` value for a response that keeps the connection (see
        :mod:`connmw._advertise`)."""
        return self._keep_alive.value(facts, server, handle, find) if self.advertises else None

    def drain(self, window: float = 0.0) -> None:
        self.load.drain(self._clock(), window)
        self.h2.drain(window)

    def stop_draining(self) -> None:
        self.load.stop_draining()
        self.h2.stop_draining()

    def warn_once(self, key: str, message: str, *args: object, exc: bool = False) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        logger.warning(message, *args, exc_info=exc)
