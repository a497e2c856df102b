"""The verdict: findings as a pure function of what a case observed."""

from __future__ import annotations

from collections.abc import Sequence

from .cases import H2_FORBIDDEN, CaseSpec, tokens
from .results import CaseResult, Finding, goaways_text


def ms(seconds: float) -> str:
    """``<0.1 ms``, ``0.4 ms``, ``12 ms``, ``1.5 s``."""
    if seconds < 0.0001:
        return "<0.1 ms"
    if seconds < 0.01:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.1f} s"


#: The probe times a server's idle close from the moment it has read the response,
#: which is later than the moment the server started its idle timer (after writing
#: it) by the transfer and the scheduling of the two sides: a server that closes
#: exactly at its advertised ``timeout=N`` may appear to close a little before N.
IDLE_SLACK = 0.1


def _keep_alive_timeout(values: Sequence[str]) -> float | None:
    for value in values:
        for part in value.split(","):
            name, _, number = part.strip().partition("=")
            if name.strip().lower() == "timeout":
                try:
                    return float(number.strip())
                except ValueError:
                    return None
    return None


def evaluate(spec: CaseSpec, result: CaseResult, close_wait: float) -> list[Finding]:
    """The findings for one finished case; a pure function of what was observed."""
    if spec.protocol == "HTTP/2":
        return _h2_findings(result)
    out: list[Finding] = []
    if result.status is None:
        return out
    h = result.headers

    conn_lines = h["connection"]
    resp_tokens = tokens(conn_lines)
    announced_close = "close" in resp_tokens
    announced_ka = "keep-alive" in resp_tokens or bool(h["keep-alive"])
    client_close = "close" in spec.request_tokens
    client_ka = "keep-alive" in spec.request_tokens
    http10 = spec.protocol == "HTTP/1.0"
    waited = f"{close_wait:g} s"
    answered = " and answered the next request" if result.next_request == "answered" else ""

    if len(conn_lines) > 1:
        shown = " / ".join(f"Connection: {v}" for v in conn_lines)
        if announced_close and "keep-alive" in resp_tokens:
            out.append(
                Finding(
                    "duplicate-connection",
                    "violation",
                    "RFC 9112 §9.6",
                    f"{len(conn_lines)} Connection lines that contradict each other ({shown}): "
                    "clients that read one line disagree on whether the connection persists",
                )
            )
        else:
            out.append(
                Finding(
                    "duplicate-connection",
                    "warning",
                    "RFC 9110 §5.3",
                    f"{len(conn_lines)} Connection lines ({shown}): legal, but some clients read only one",
                )
            )
    if h["transfer-encoding"]:
        if http10:
            out.append(
                Finding(
                    "chunked-to-http10",
                    "violation",
                    "RFC 9112 §6.1",
                    f"Transfer-Encoding: {', '.join(h['transfer-encoding'])} in a response to an "
                    "HTTP/1.0 request, which cannot decode it",
                )
            )
        if h["content-length"]:
            out.append(
                Finding(
                    "length-and-chunked",
                    "violation",
                    "RFC 9112 §6.1",
                    "Content-Length and Transfer-Encoding in the same response (a request-smuggling risk "
                    "behind a proxy)",
                )
            )

    if result.closed is False:
        if announced_close:
            who = " (the client asked for it too)" if client_close else ""
            out.append(
                Finding(
                    "close-announced-kept",
                    "violation",
                    "RFC 9112 §9.6",
                    f"the response says Connection: close{who} but the connection stayed open "
                    f"for {waited}{answered}",
                )
            )
        elif client_close:
            out.append(
                Finding(
                    "client-close-kept",
                    "violation",
                    "RFC 9112 §9.6",
                    f'the request said "Connection: {spec.connection}" but the connection stayed open '
                    f"for {waited}{answered}",
                )
            )
        elif http10 and not client_ka:
            out.append(
                Finding(
                    "http10-kept",
                    "violation",
                    "RFC 9112 §9.3",
                    f"HTTP/1.0 request without keep-alive, but the connection stayed open for {waited}{answered}",
                )
            )
        elif http10 and "keep-alive" not in resp_tokens:
            out.append(
                Finding(
                    "kept-without-keep-alive",
                    "warning",
                    "RFC 9112 §9.3",
                    "HTTP/1.0 keep-alive request: the connection stayed open but the response does not "
                    "say Connection: keep-alive, so an HTTP/1.0 client will not reuse it",
                )
            )
        elif result.next_request == "not-answered":
            if announced_ka:
                out.append(
                    Finding(
                        "keep-alive-announced-closed",
                        "violation",
                        "RFC 9112 §9.3",
                        "the response announces keep-alive but the next request on the connection "
                        "got no answer",
                    )
                )
            else:
                out.append(
                    Finding(
                        "unannounced-close",
                        "warning",
                        "RFC 9112 §9.6",
                        "the response does not say Connection: close, yet the next request on the "
                        "connection got no answer",
                    )
                )
    elif result.closed is True and result.framing != "close":
        after = result.closed_after or 0.0
        if announced_ka and not announced_close:
            timeout = _keep_alive_timeout(h["keep-alive"])
            if timeout is None or after < timeout - IDLE_SLACK:
                out.append(
                    Finding(
                        "keep-alive-announced-closed",
                        "violation",
                        "RFC 9112 §9.3",
                        f"the response announces keep-alive but the server closed the connection "
                        f"{ms(after)} later",
                    )
                )
        elif (
            not announced_close
            and not client_close
            and not http10
            and result.response_version == "HTTP/1.1"
            and after < close_wait
        ):
            out.append(
                Finding(
                    "unannounced-close",
                    "warning",
                    "RFC 9112 §9.6",
                    f"the server closed the connection {ms(after)} after a response that "
                    "did not say Connection: close",
                )
            )
    if spec.protocol == "HTTP/1.1" and not client_close:
        out.extend(_proxy_findings(result))
    return out


#: Reasons connmw gives when its own client asked to close, or spoke HTTP/1.0.
_CLIENT_REASONS = ("client", "http-1.0")


def _proxy_findings(result: CaseResult) -> list[Finding]:
    """An HTTP/1.1 request that did not ask to close, yet the connmw behind a proxy
    (its decision header captured) saw a client that closes: the proxy in between
    turned it into a close, as nginx's default ``proxy_pass`` does."""
    for name, values in result.captured.items():
        for value in values:
            verdict, _, reason = value.partition(";")
            key, _, reason = reason.strip().partition("=")
            if (
                verdict.strip().lower() == "close"
                and key.strip().lower() == "reason"
                and reason.strip().lower() in _CLIENT_REASONS
            ):
                return [
                    Finding(
                        "proxy-closes-upstream",
                        "warning",
                        "RFC 9112 §9.3",
                        f'connmw behind says "{name}: {value}" although this request did not ask to '
                        "close: a proxy in between closes every upstream connection, so connmw's own "
                        "closes never act (nginx: `keepalive 16;` in the upstream, `proxy_http_version "
                        '1.1;`, `proxy_set_header Connection "";`; HAProxy: `http-reuse`, no '
                        "`option httpclose` nor `option http-server-close`)",
                    )
                ]
    return []


def _h2_findings(result: CaseResult) -> list[Finding]:
    out: list[Finding] = []
    h = result.headers
    bad = [n for n in H2_FORBIDDEN if h.get(n)]
    bad += [f"te: {v}" for v in h.get("te", []) if v.strip().lower() != "trailers"]
    if result.status is not None and bad:
        out.append(
            Finding(
                "h2-forbidden-header",
                "violation",
                "RFC 9113 §8.2.2",
                f"HTTP/2 response carries connection-specific headers ({', '.join(sorted(bad))}): "
                "a conforming client must treat it as malformed",
            )
        )
    streams = result.streams
    goaway = " after " + goaways_text(result.goaways) if result.goaways else ""
    if streams is not None and streams.lost:
        out.append(
            Finding(
                "h2-streams-lost",
                "violation",
                "RFC 9113 §6.8",
                f"{streams.lost} of {streams.sent} streams got no complete response "
                f"({streams.reset} reset, {streams.cut} cut when the connection ended, "
                f"{streams.lost - streams.reset - streams.cut} left unanswered){goaway}: "
                "the server may have run their requests, so a client cannot tell whether to retry them",
            )
        )
    for g in dict.fromkeys(result.goaways):
        if g.error_code:
            out.append(
                Finding(
                    "h2-goaway-error",
                    "warning",
                    "RFC 9113 §6.8",
                    f"the server ended the connection with {g.text}: an error, not a graceful shutdown",
                )
            )
    if result.closed and result.close_kind != "goaway":
        out.append(
            Finding(
                "h2-close-without-goaway",
                "warning",
                "RFC 9113 §6.8",
                "the server closed the HTTP/2 connection without a GOAWAY, so its client cannot know "
                "which streams were processed",
            )
        )
    return out
