"""Wire-level conformance: one table of cases against every server.

Each server starts once for this module (the ``server`` fixture is module-scoped
and parametrized, so pytest runs all cases of one server before starting the
next), on loopback with an ephemeral port, and is stopped at the end.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator

import pytest

from tests.conformance.cases import CASES, NotApplicable, Target
from tests.conformance.targets import BY_ID, SPECS, Env, expected
from tests.conftest import unavailable

pytestmark = [pytest.mark.server, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    import trustme

    tmp = tmp_path_factory.mktemp("conformance")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    certfile, keyfile = tmp / "cert.pem", tmp / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    cafile = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    client.set_alpn_protocols(["h2"])
    return Env(tmp, str(certfile), str(keyfile), client, str(cafile))


@pytest.fixture(scope="module", params=[spec.id for spec in SPECS])
def server(request: pytest.FixtureRequest, env: Env) -> Iterator[Target]:
    spec = BY_ID[request.param]
    why = spec.available()
    if why is not None:
        unavailable(why)
    with spec.start(env) as port:
        yield Target(
            spec.id,
            port,
            protocol=spec.protocol,
            always_closes=spec.always_closes,
            ssl_context=env.client_ssl if spec.protocol == "h2-tls" else None,
            cafile=env.cafile if spec.protocol == "h3" else None,
        )


@pytest.mark.parametrize("case", list(CASES))
def test_case(
    server: Target,
    case: str,
    request: pytest.FixtureRequest,
    record_property: Callable[[str, object], None],
) -> None:
    spec = BY_ID[server.id]
    known = spec.known.get(case)
    if known is not None:
        request.applymarker(pytest.mark.xfail(reason=known, strict=True))
    want = expected(spec)[case]
    try:
        observed = CASES[case](server)
    except NotApplicable as exc:
        raise AssertionError(f"{server.id} pins {want!r} for {case}, which does not apply: {exc}") from exc
    record_property("observed", observed)
    # What this server does is pinned in its spec (and so in the README's table).
    assert observed == want, f"{server.id}, {case}: observed {observed!r}, the spec pins {want!r}"


def test_every_server_is_in_the_table() -> None:
    assert len(BY_ID) == len(SPECS), "two servers share an id"
    assert {s.protocol for s in SPECS} == {"h1", "h2c", "h2-tls", "h3"}
    apps = {s.app for s in SPECS}
    assert {"Flask", "Django", "FastAPI", "Starlette"} <= apps, apps


def test_every_case_has_a_pinned_outcome_on_every_server() -> None:
    for spec in SPECS:
        assert set(expected(spec)) == set(CASES), spec.id
