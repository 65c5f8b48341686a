"""`haplane serve` and `haplane up` as real processes: TLS, the exposure rule, schemathesis over the OpenAPI
document, and the whole chain API → store → agent → real HAProxy → HTTP backend (with TTL expiry)."""

from __future__ import annotations

import datetime
import os
import re
import signal
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from tests.support.procs import MakeHttpBackend, Proc, free_port, short_tmpdir, up_args, wait_until

pytestmark = pytest.mark.integration

HAPLANE = [sys.executable, "-m", "haplane"]
TOKEN = "integration-admin-token"


def start(args: list[str], tmp: Path, env: dict[str, str] | None = None) -> Proc:
    full = {**os.environ, "HAPLANE_TOKEN": TOKEN, **(env or {})}
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        full.pop(key, None)
    return Proc([*HAPLANE, *args], tmp / "haplane.log", env=full)


def wait_listening(url: str, proc: Proc, verify: bool | ssl.SSLContext = True) -> None:
    proc.wait_answering(url + "/health", verify=verify)


def serve_for_schemathesis() -> Iterator[str]:
    tmp = short_tmpdir("api")
    port = free_port()
    # schemathesis sends wrong tokens to /auth/login: its address must not be made to wait (429) for them
    proc = start(["serve", "--state-dir", str(tmp / "state"), "--listen", f"127.0.0.1:{port}"], tmp,
                 env={"HAPLANE_LOGIN_FAILURES_ALLOWED": "1000000"})
    url = f"http://127.0.0.1:{port}"
    wait_listening(url, proc)
    yield url
    assert proc.stop() == 0, proc.log_tail()


served = pytest.fixture(scope="module")(serve_for_schemathesis)
served_alone = pytest.fixture(serve_for_schemathesis)  # a server of its own (the stateful run empties it)


def test_serve_answers_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    proc = start(["serve", "--state-dir", str(tmp_path / "s"), "--listen", f"127.0.0.1:{port}"], tmp_path)
    url = f"http://127.0.0.1:{port}"
    wait_listening(url, proc)
    h = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.put(f"{url}/services/web", json={"port": 80}, headers=h).status_code == 201
    assert httpx.put(f"{url}/services/web", json={"port": 80}).status_code == 401
    assert proc.stop(sig=signal.SIGTERM) == 0
    # the write survived the process
    proc = start(["serve", "--state-dir", str(tmp_path / "s"), "--listen", f"127.0.0.1:{port}"], tmp_path)
    wait_listening(url, proc)
    assert httpx.get(f"{url}/services/web", headers=h).json()["port"] == 80
    assert proc.stop() == 0


def test_serve_refuses_a_public_address_without_tokens(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAPLANE_")}
    r = subprocess.run([*HAPLANE, "serve", "--state-dir", str(tmp_path), "--listen", f"0.0.0.0:{free_port()}"],
                       capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 1
    assert "without tokens" in r.stderr


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "api.pem", tmp / "api.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_serve_over_tls_with_secure_session_cookies(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    port = free_port()
    proc = start(["serve", "--state-dir", str(tmp_path / "s"), "--listen", f"127.0.0.1:{port}",
                  "--tls-cert", str(cert), "--tls-key", str(key)], tmp_path)
    url = f"https://127.0.0.1:{port}"
    ctx = ssl.create_default_context(cafile=str(cert))
    wait_listening(url, proc, verify=ctx)
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/health")  # not trusted without the cert
    r = httpx.post(url + "/auth/login", json={"token": TOKEN}, verify=ctx)
    assert r.status_code == 200 and "secure" in r.headers["set-cookie"].lower()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)  # plain HTTP is not served
    assert proc.stop() == 0


def test_every_answer_conforms_to_the_openapi_document(served: str) -> None:
    """schemathesis generates requests for every operation of /openapi.json (a few examples each): none may
    answer 5xx, and every answer must conform to the document: a status it declares, its content type, its
    headers and its schema (the typed answers, and the error shape {error, field, detail} for every error)."""
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    h = {"Authorization": f"Bearer {TOKEN}"}  # records, so the lists answer typed items, not only []
    assert httpx.put(served + "/services/seeded", json={"predicate": "seeded.test", "port": 8080,
                                                        "health": {"uri": "/h"}}, headers=h).status_code in (200, 201)
    assert httpx.put(served + "/services/seeded/instances/i1", headers=h,
                     json={"address": "127.0.0.2", "ttl": 600, "version": "1"}).status_code in (200, 201)
    assert httpx.put(served + "/backends/seeded-live", json={"type": "dynamic", "name": "seeded", "version": "1"},
                     headers=h).status_code in (200, 201)
    assert httpx.put(served + "/frontends/seeded-fe", json={"bind": "127.0.0.1:1", "backend": "seeded-live"},
                     headers=h).status_code in (200, 201)
    schema = schemathesis.openapi.from_url(served + "/openapi.json")
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
              response_schema_conformance]
    operations = 0
    statuses: set[int] = set()
    for result in schema.get_all_operations():
        op = result.ok()
        operations += 1

        @given(case=op.as_strategy())
        @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=20)
            statuses.add(response.status_code)
            case.validate_response(response, checks=checks)
            ctype = "".join(response.headers.get("content-type", []))
            if response.status_code >= 400 and ctype.startswith("application/json"):
                # the three always; a refused batch adds its bad items, a 413 its limit (api/errors.py), a 409
                # NameTaken the name's holder
                keys = set(response.json())
                assert {"error", "field", "detail"} <= keys <= {"error", "field", "detail", "errors", "limit",
                                                                "setting", "holder"}, response.text

        check()
    assert operations >= 20
    assert {200, 404, 422} <= statuses, statuses  # answers of both kinds were checked against their schemas


CONFORMANCE = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
               "response_headers_conformance", "response_schema_conformance")


def _checks() -> list[Any]:
    from schemathesis import checks
    from schemathesis.specs.openapi import checks as openapi_checks

    return [getattr(checks, n, None) or getattr(openapi_checks, n) for n in CONFORMANCE]


def test_sequences_of_calls_conform_too(served_alone: str) -> None:
    """schemathesis' state machine: sequences of calls joined by the links it infers from the document (a PUT's
    name fed to the GET, PATCH, DELETE of that record, ...), bounded (25 sequences of at most 8 calls): no 5xx,
    every answer conforming."""
    from schemathesis import GenerationMode

    served, h = served_alone, {"Authorization": f"Bearer {TOKEN}"}
    empty = httpx.get(served + "/export", headers=h).json()
    schema = schemathesis.openapi.from_url(served + "/openapi.json")
    # valid requests only (the single-call test above sends invalid ones): sequences that create, then use
    schema.config.generation.update(modes=[GenerationMode.POSITIVE])
    checks = _checks()
    calls: list[tuple[str, str, int]] = []

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            # every sequence starts from the same (empty) registry: hypothesis sees the same answers to the same
            # calls (state left by the last sequence made its generation "flaky")
            r = httpx.post(served + "/import", json=empty, headers=h, timeout=30)
            assert r.status_code == 200, r.text

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"headers": {"Authorization": f"Bearer {TOKEN}"}, "timeout": 20}

        def validate_response(self, response: Any, case: schemathesis.Case, additional_checks: Any = None,
                              **kwargs: Any) -> None:
            calls.append((case.method, case.path, response.status_code))
            case.validate_response(response, checks=checks, transport_kwargs=kwargs)

    # at most 25 sequences of 8 calls (~20-50 s here), the same ones every run (derandomized, from an empty
    # registry each); generate only: shrinking replays a sequence many times (a failing one is reported as found)
    Machine.run(settings=settings(max_examples=25, stateful_step_count=8, deadline=None, database=None,
                                  suppress_health_check=list(HealthCheck), phases=[Phase.generate],
                                  derandomize=True))
    assert len(calls) >= 50, calls
    created = {(m, p) for m, p, code in calls if m in ("PUT", "POST") and 200 <= code < 300}
    assert created, "no sequence got past a refused write"


def test_the_openapi_document_is_a_contract_a_client_generator_can_use(served: str) -> None:
    doc = httpx.get(served + "/openapi.json").json()
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)) and all(re.fullmatch(r"[a-z][A-Za-z0-9]*", i) for i in ids), ids
    assert {"listServices", "putInstance", "switchVersion", "generate", "getMetrics"} <= set(ids)
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": doc["components"]["securitySchemes"]["bearerAuth"][
            "description"]}
    assert {"bearerAuth": []} in doc["security"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            answers = op["responses"]
            ok = [c for c in answers if c.startswith("2")]
            assert ok and all("content" in answers[c] for c in ok), (method, path)
            for code, answer in answers.items():
                if code[0] in "45" and not (code == "503" and op["operationId"] == "health"):
                    assert answer["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/ErrorBody"}, (method, path, code)
            if op["operationId"] in ("health", "login", "logout"):
                assert op["security"] == [] and "403" not in answers
            else:
                assert "security" not in op and "401" in answers and "403" in answers
    created = {op["operationId"] for ops in doc["paths"].values() for op in ops.values() if "201" in op["responses"]}
    assert {"putService", "putInstance", "putCertificate"} <= created
    # Thalassa's routes answer as Thalassa did (200 for a PUT that creates): its clients and tests expect it
    assert not {"putFrontend", "putBackend"} & created
    h = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.put(served + "/services/contract-s", json={}, headers=h).status_code == 201
    assert httpx.put(served + "/services/contract-s", json={}, headers=h).status_code == 200


def test_up_routes_what_the_api_registers_and_forgets_what_expires(tmp_path: Path,
                                                                  http_backends: MakeHttpBackend,
                                                                  loopback: Callable[[], str]) -> None:
    state = short_tmpdir("up")
    api_port, proxy_port, https_port = free_port(), free_port(), free_port()
    proc = start(up_args("--state-dir", str(state), "--listen", f"127.0.0.1:{api_port}", "--http-port",
                         str(proxy_port), "--http-address", "127.0.0.1", "--no-docker", https_port=https_port),
                 tmp_path, env={"HAPLANE_RAMP_MIN": "10", "HAPLANE_DRAIN_TIMEOUT": "1"})
    api = f"http://127.0.0.1:{api_port}"
    wait_listening(api, proc)
    wait_until(lambda: "login" in proc.log.read_text(), 20, what="the banner")
    banner = proc.log.read_text()
    assert f"http://127.0.0.1:{proxy_port}/" in banner and f"{api}/ui/login?token={TOKEN}" in banner
    assert f"https://127.0.0.1:{https_port}/" in banner

    h = {"Authorization": f"Bearer {TOKEN}"}
    keep, gone = http_backends("keep", loopback()), http_backends("gone", loopback())
    assert httpx.put(f"{api}/services/web", json={"predicate": "web.test", "port": keep.port},
                     headers=h).status_code == 201
    assert httpx.put(f"{api}/services/web/instances/keep", json={"address": keep.host}, headers=h).status_code == 201
    assert httpx.put(f"{api}/services/web/instances/gone", json={"address": f"{gone.host}:{gone.port}", "ttl": 2},
                     headers=h).status_code == 201

    proxy = httpx.Client(base_url=f"http://127.0.0.1:{proxy_port}", headers={"Host": "web.test"}, timeout=5)

    def answered_by() -> set[str]:
        seen = set()
        for _ in range(12):
            r = proxy.get("/")
            if r.status_code == 200:
                seen.add(r.headers["x-backend"])
        return seen

    wait_until(lambda: answered_by() == {"keep", "gone"}, 30, what="both instances routable")
    # HTTPS too, with the self-signed default certificate up made at its first start
    with httpx.Client(base_url=f"https://127.0.0.1:{https_port}", headers={"Host": "web.test"}, verify=False,
                      timeout=5) as tls:
        assert tls.get("/").headers["x-backend"] in {"keep", "gone"}
    applied = httpx.get(f"{api}/haproxy/config?applied=1", headers=h)
    # the service has a backend of its own, or holds a pool's spare (a new service takes one: no reload)
    assert applied.status_code == 200 and ("backend web" in applied.text or "backend _pool" in applied.text)
    # no heartbeat: the TTL instance leaves HAProxy by itself
    wait_until(lambda: answered_by() == {"keep"}, 30, what="the expired instance gone from HAProxy")
    hits = gone.hits
    assert {r.headers["x-backend"] for r in (proxy.get("/") for _ in range(20))} == {"keep"}
    assert gone.hits == hits

    assert httpx.get(f"{api}/health").json() == {"status": "ok"}  # the details need a token
    status = httpx.get(f"{api}/health", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    agent = status["agent"]
    assert agent["haproxy_ok"] and agent["store_ok"] and agent["last_error"] is None
    assert agent["revision"] == status["store"]["revision"]  # the agent has applied everything
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0, proc.log_tail()
    out = subprocess.run(["pgrep", "-f", str(state / "haproxy.cfg")], capture_output=True, text=True)
    assert out.stdout.strip() == "", "HAProxy left running after Ctrl-C"
