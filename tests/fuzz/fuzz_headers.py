"""Coverage-guided fuzzing of the header parser and both middlewares' header handling.

Every input is decoded into a request (HTTP version, method, path, header list with
any bytes) and an application response (status, header list, body parts), run
through :mod:`connmw` and checked with the invariants of ``tests/fuzz/harness.py``
(never raises, at most one Connection line, nothing connmw adds carries CR/LF/NUL,
nothing connection-specific on HTTP/2/3, idempotent, byte-identical body).

With atheris (not part of the ``test`` extra: it ships binary wheels for some
CPython versions only, and needs clang/libFuzzer to build elsewhere)::

    pip install atheris
    python tests/fuzz/fuzz_headers.py -atheris_runs=200000
    python tests/fuzz/fuzz_headers.py -max_total_time=600 /tmp/connmw-corpus

Without atheris, the same checks run under hypothesis with a large budget::

    python tests/fuzz/fuzz_headers.py --hypothesis 20000

Both print the number of executions when they stop. A crash reproducer from
atheris is re-run by passing its file name as the only argument.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

EXECUTIONS = [0]
# Each case builds fresh middlewares: their one-time warnings would flood the output.
logging.getLogger("connmw").setLevel(logging.ERROR)

VERSIONS = ["1.1", "1.0", "1", "2", "2.0", "3", "0.9", "bogus", ""]
PROTOCOLS = ["HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/3", "bogus", ""]
METHODS = ["GET", "HEAD", "POST", ""]
NAMES = [
    b"connection",
    b"Connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"te",
    b"upgrade",
    b"content-length",
    b"x-hop",
    b"authorization",
    b"x-forwarded-for",
]


def _report() -> None:
    print(f"connmw fuzz: {EXECUTIONS[0]} executions", file=sys.stderr)


atexit.register(_report)


def one_input(data: bytes) -> None:
    """Decode ``data`` into an exchange and check it (atheris entry point)."""
    import atheris

    fdp = atheris.FuzzedDataProvider(data)
    run_case(
        version=VERSIONS[fdp.ConsumeIntInRange(0, len(VERSIONS) - 1)],
        method=METHODS[fdp.ConsumeIntInRange(0, len(METHODS) - 1)],
        request=[_header(fdp) for _ in range(fdp.ConsumeIntInRange(0, 8))],
        status=fdp.ConsumeIntInRange(-1, 1000),
        response=[_header(fdp) for _ in range(fdp.ConsumeIntInRange(0, 8))],
        body=[fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 32)) for _ in range(fdp.ConsumeIntInRange(1, 3))],
        option_index=fdp.ConsumeIntInRange(0, 99),
        connection_values=[
            fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 200)) for _ in range(fdp.ConsumeIntInRange(0, 3))
        ],
    )


def _header(fdp: Any) -> tuple[bytes, bytes]:
    if fdp.ConsumeBool():
        name = NAMES[fdp.ConsumeIntInRange(0, len(NAMES) - 1)]
    else:
        name = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 16))
    return name, fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))


def run_case(
    *,
    version: str,
    method: str,
    request: list[tuple[bytes, bytes]],
    status: int,
    response: list[tuple[bytes, bytes]],
    body: list[bytes],
    option_index: int,
    connection_values: list[bytes],
) -> None:
    from connmw._headers import connection_tokens
    from tests.fuzz.harness import OPTION_SETS, check_asgi, check_wsgi

    EXECUTIONS[0] += 1
    options = OPTION_SETS[option_index % len(OPTION_SETS)]
    tokens = connection_tokens(connection_values)
    assert all(t and b"," not in t for t in tokens)
    request = request + [(b"connection", v) for v in connection_values]
    check_asgi([(k.lower(), v) for k, v in request], version, method, "/", status, response, body, options)
    # WSGI: native strings as a server decodes them (latin-1), names as CGI keys allow.
    wsgi_request = [
        (k.decode("latin-1"), v.decode("latin-1"))
        for k, v in request
        if k and all(33 <= c < 127 and c != 58 for c in k)
    ]
    wsgi_response = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response]
    protocol = PROTOCOLS[option_index % len(PROTOCOLS)]
    check_wsgi(wsgi_request, protocol, method, f"{status} X", wsgi_response, body, options)


def run_hypothesis(examples: int) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.fuzz import strategies as hs

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        version=hs.http_version,
        method=hs.method,
        request=hs.request_headers,
        status=st.integers(-1, 1000),
        response=hs.response_headers,
        body=hs.body,
        option_index=st.integers(0, 99),
        connection_values=st.lists(hs.connection_value | hs.long_connection_value(), max_size=3),
    )
    def fuzz(**kwargs: Any) -> None:
        run_case(**kwargs)

    fuzz()


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "--hypothesis":
        run_hypothesis(int(sys.argv[2]))
        return
    import atheris

    with atheris.instrument_imports():
        import connmw
        import connmw._headers
        import connmw.asgi
        import connmw.wsgi  # noqa: F401
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
