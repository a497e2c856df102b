"""``connmw probe``: what a server does with the ``Connection`` header, read off the wire.

Modules: :mod:`.cases` (target, options, cases), :mod:`.wire` (the HTTP/1.x client),
:mod:`.http2` (the HTTP/2 client), :mod:`.findings` (the verdict), :mod:`.results` (what was
observed, JSON), :mod:`.report` (the table), :mod:`.run` (running the cases).

The probe speaks HTTP/1.x over a plain socket (TLS for ``https://`` URLs, with
certificate checks on unless ``--insecure``), so it reports the header lines exactly
as the server sent them and sees on the socket itself whether the server closed the
connection. It needs nothing outside the standard library, except ``--http2``, which
imports the ``h2`` package when asked.

Cases, each on a fresh connection:

=====================  ====================================================
``http11``             ``HTTP/1.1``, no ``Connection``
``http11-close``       ``HTTP/1.1``, ``Connection: close``
``http11-te-close``    ``HTTP/1.1``, ``Connection: TE, close`` (a token list)
``http11-close-case``  ``HTTP/1.1``, ``Connection: Close`` (tokens are case-insensitive)
``http10``             ``HTTP/1.0``, no ``Connection``
``http10-keep-alive``  ``HTTP/1.0``, ``Connection: keep-alive``
``h2``                 HTTP/2 with prior knowledge (``--http2``; ALPN ``h2`` over TLS)
``h2-streams``         HTTP/2, up to 200 requests on one connection, 8 streams at
                       once, none opened after a GOAWAY (``--http2``)
=====================  ====================================================

For each case the probe sends the request, reads the response (the body is read
and discarded), then waits up to ``close_wait`` seconds for the server to close
the connection. When it does not, the same request is sent again on the same
connection to see whether it is answered. On HTTP/2 a second stream is sent on
the same connection instead. The ``h2-streams`` case reads every stream to its end
(or the connection's) and counts how each ended; every GOAWAY is recorded.

Findings
--------
A *violation* makes the exit status 1; a *warning* is reported only.

==============================  =========  ==============  =====================================
code                            severity   reference       when
==============================  =========  ==============  =====================================
``close-announced-kept``        violation  RFC 9112 §9.6   the response says ``close``; the
                                                           connection stayed open
``client-close-kept``           violation  RFC 9112 §9.6   the request said ``close``; the
                                                           connection stayed open
``http10-kept``                 violation  RFC 9112 §9.3   HTTP/1.0 request without
                                                           ``keep-alive``; the connection stayed
                                                           open
``keep-alive-announced-closed`` violation  RFC 9112 §9.3   the response says ``keep-alive`` (or
                                                           carries ``Keep-Alive``); the server
                                                           closed before its advertised timeout
                                                           (less ``IDLE_SLACK``, 0.1 s) or
                                                           dropped the next request
``duplicate-connection``        violation  RFC 9112 §9.6   several ``Connection`` lines that
                                                           contradict (``close`` and
                                                           ``keep-alive``)
``duplicate-connection``        warning    RFC 9110 §5.3   several ``Connection`` lines that
                                                           agree (legal, but some clients read
                                                           only one)
``chunked-to-http10``           violation  RFC 9112 §6.1   ``Transfer-Encoding`` in a response
                                                           to an HTTP/1.0 request
``length-and-chunked``          violation  RFC 9112 §6.1   ``Content-Length`` and
                                                           ``Transfer-Encoding`` together
``h2-forbidden-header``         violation  RFC 9113 §8.2.2 ``connection``, ``keep-alive``,
                                                           ``proxy-connection``,
                                                           ``transfer-encoding``, ``upgrade`` or
                                                           ``te`` other than ``trailers`` on
                                                           HTTP/2
``h2-streams-lost``             violation  RFC 9113 §6.8   HTTP/2 streams at or below a GOAWAY's
                                                           last stream id (or with no GOAWAY)
                                                           got no complete response (reset, cut,
                                                           unanswered after the GOAWAY)
``unannounced-close``           warning    RFC 9112 §9.6   an HTTP/1.1 response without
                                                           ``close``, then the server closed
``kept-without-keep-alive``     warning    RFC 9112 §9.3   HTTP/1.0 ``keep-alive`` request; the
                                                           response does not say ``keep-alive``
                                                           but the connection stayed open
``h2-goaway-error``             warning    RFC 9113 §6.8   a GOAWAY with an error code
``h2-close-without-goaway``     warning    RFC 9113 §6.8   an HTTP/2 connection closed without
                                                           a GOAWAY
``proxy-closes-upstream``       warning    RFC 9112 §9.3   an HTTP/1.1 request without
                                                           ``close``, yet connmw behind a proxy
                                                           says ``close; reason=client`` (or
                                                           ``http-1.0``) in its decision header:
                                                           the proxy closes every upstream
                                                           connection
==============================  =========  ==============  =====================================

JSON output (``--json``), schema ``connmw.probe/1``
---------------------------------------------------
Keys are only ever added within a schema version; a removal or a change of
meaning bumps it. ::

    {
      "schema": "connmw.probe/1",
      "tool": "connmw 0.1.0",
      "url": "http://127.0.0.1:8000/",
      "target": {"scheme": "http", "host": "127.0.0.1", "port": 8000, "path": "/",
                 "tls": false, "tls_verified": false},
      "options": {"method": "GET", "headers": ["X-Token: 1"], "timeout": 5.0,
                  "close_wait": 1.0, "concurrency": 1, "http2": false},
      "cases": [
        {
          "id": "http11-te-close",          # stable case id (table above)
          "title": "HTTP/1.1 TE, close",
          "protocol": "HTTP/1.1",           # "HTTP/1.1", "HTTP/1.0" or "HTTP/2"
          "request_connection": "TE, close",# the request's Connection value, or null
          "requests": 1,                    # requests sent before the close check
          "status": 200,                    # null when no response arrived (see "error")
          "response_version": "HTTP/1.1",   # status-line version; "HTTP/2" for h2
          "headers": {                      # values, one per line, as received
            "connection": ["close"], "keep-alive": [],
            "transfer-encoding": [], "content-length": ["5"]
          },
          "lines": ["Connection: close", "Content-Length: 5"],  # the exact lines
          "framing": "content-length",      # "content-length", "chunked", "close", "none"
          "body_bytes": 5,
          "closed": true,                   # the server closed (null: unknown)
          "close_kind": "fin",              # "fin", "reset", "goaway" or null
          "closed_after_ms": 0.4,           # from the end of the response; null if kept
          "next_request": null,             # "answered", "not-answered", null (not sent)
          "next_status": null,
          "findings": [{"code": "...", "severity": "violation", "rfc": "RFC 9112 §9.6",
                        "message": "..."}],
          "error": null,                    # why the case could not complete, or null
          "elapsed_ms": 3.1,
          "goaways": [                      # HTTP/2: every GOAWAY received, in order
            {"error_code": 0, "error": "NO_ERROR", "last_stream_id": 2147483647,
             "debug_data": "max-requests"}
          ],
          "streams": {                      # h2-streams only, else null
            "concurrency": 8, "sent": 33, "completed": 33,
            "refused": 0,                   # above the last id or REFUSED_STREAM: safe to retry
            "reset": 0, "cut": 0,           # reset otherwise; cut by the connection's end
            "unanswered": 0,                # open at the timeout (lost after a GOAWAY)
            "lost": 0, "all_completed": true,
            "before_goaway": 25             # responses before the first GOAWAY, or null
          }
        }
      ],
      "summary": {"violations": 0, "warnings": 0, "errors": 0},
      "exit_code": 0
    }

Exit status: 0 no violation; 1 at least one violation; 2 usage error, or the
target could not be reached (resolution, refusal, timeout, TLS failure), or a
case could not complete and no violation was found.

Bounds: one connection per case, at most ``concurrency`` at once (default 1, so
single-threaded servers work); every connect and every response has ``timeout``
seconds; the close check waits ``close_wait`` seconds; bodies are read and
discarded (never stored); a response head is capped at 64 KiB.
"""

from __future__ import annotations

from .cases import (
    CASES,
    H2_CASE,
    SCHEMA,
    CaseSpec,
    ProbeConfig,
    ProbeError,
    Target,
    UsageError,
    check_method,
    parse_header,
    parse_url,
    tokens,
)
from .findings import evaluate, ms
from .report import Style, closed_text, format_report, next_text, render_table, verdict
from .results import CaseResult, Finding, Report
from .run import run_case, run_probe

__all__ = [
    "CASES",
    "H2_CASE",
    "SCHEMA",
    "CaseResult",
    "CaseSpec",
    "Finding",
    "ProbeConfig",
    "ProbeError",
    "Report",
    "Style",
    "Target",
    "UsageError",
    "check_method",
    "closed_text",
    "evaluate",
    "format_report",
    "ms",
    "next_text",
    "parse_header",
    "parse_url",
    "render_table",
    "run_case",
    "run_probe",
    "tokens",
    "verdict",
]
