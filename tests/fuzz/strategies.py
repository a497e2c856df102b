"""Hypothesis strategies for hostile requests and responses (shared by the property
tests and the hypothesis fallback of the fuzz harness)."""

from __future__ import annotations

from hypothesis import strategies as st

#: Header names the middlewares look at, in odd spellings, plus noise.
INTERESTING_NAMES = [
    b"connection",
    b"Connection",
    b"CONNECTION",
    b"keep-alive",
    b"Keep-Alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"Transfer-Encoding",
    b"te",
    b"TE",
    b"upgrade",
    b"content-length",
    b"content-type",
    b"host",
    b"authorization",
    b"cookie",
    b"x-forwarded-for",
    b"forwarded",
    b"x-hop",
    b"x-keep",
    b"trailer",
]

TOKENS = [
    b"close",
    b"Close",
    b"CLOSE",
    b"keep-alive",
    b"Keep-Alive",
    b"upgrade",
    b"te",
    b"x-hop",
    b"x-keep",
    b"host",
    b"authorization",
    b"cookie",
    b"content-length",
    b"content-type",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"forwarded",
    b"transfer-encoding",
    b"",
    b" ",
    b"\t",
    b"clo se",
    b"close\x00",
    b"\xffclose",
    b"\xc3\xa9t\xc3\xa9",
    b"x\r\nset-cookie: a=1",
]

SEPARATORS = [b",", b", ", b" ,", b",,", b"\t,\t", b"\r\n ", b"\r\n\t,", b";"]

token = st.sampled_from(TOKENS) | st.binary(max_size=12)

connection_value = st.builds(
    lambda toks, seps: b"".join(t + seps[i % len(seps)] for i, t in enumerate(toks)),
    st.lists(token, max_size=12),
    st.lists(st.sampled_from(SEPARATORS), min_size=1, max_size=4),
)


@st.composite
def long_connection_value(draw: st.DrawFn) -> bytes:
    """Thousands of tokens, sometimes with a close hidden at a random place."""
    n = draw(st.integers(min_value=10, max_value=5000))
    filler = draw(st.sampled_from([b"x", b"x-hop", b"a", b"keep-alive", b""]))
    toks = [filler] * n
    if draw(st.booleans()):
        toks.insert(draw(st.integers(min_value=0, max_value=n)), b"close")
    return b",".join(toks)


header_name = st.sampled_from(INTERESTING_NAMES) | st.binary(min_size=0, max_size=20)
header_value = (
    connection_value | st.binary(max_size=30) | st.sampled_from([b"", b"trailers", b" trailers", b"chunked"])
)

request_headers = st.lists(
    st.tuples(st.sampled_from([b"connection"]), connection_value | long_connection_value())
    | st.tuples(header_name.map(bytes.lower), header_value),
    max_size=12,
)

response_headers = st.lists(st.tuples(header_name, header_value), max_size=10)

http_version = st.sampled_from(["1.1", "1.0", "1", "2", "2.0", "3", "0.9", "bogus", ""])
method = st.sampled_from(["GET", "HEAD", "POST", "OPTIONS", "get", ""])
path = st.sampled_from(["/", "/close/x", "/close/", "/a/b", ""]) | st.text(max_size=12)
status = st.sampled_from([100, 101, 200, 204, 304, 400, 404, 500, 503, 599, 999]) | st.integers(-5, 1200)
body = st.lists(st.binary(max_size=40), min_size=1, max_size=4)

# WSGI: native strings. Values may hold anything a server could hand over.
wsgi_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x2FF), max_size=30)
wsgi_connection_value = connection_value.map(lambda b: b.decode("latin-1")) | long_connection_value().map(
    lambda b: b.decode("latin-1")
)
wsgi_header_name = st.sampled_from([n.decode() for n in INTERESTING_NAMES]) | st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20
)
wsgi_request_headers = st.lists(
    st.tuples(st.just("Connection"), wsgi_connection_value) | st.tuples(wsgi_header_name, wsgi_text),
    max_size=10,
)
wsgi_response_headers = st.lists(st.tuples(wsgi_header_name, wsgi_text | wsgi_connection_value), max_size=10)
wsgi_protocol = st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/2.0", "HTTP/3", "bogus", ""])
wsgi_status = st.sampled_from(
    ["200 OK", "204 No Content", "304 Not Modified", "101 Switching", "500 Oops"]
) | (st.text(max_size=12))
