"""HTTPS in compose and render (pure), held to real `haproxy -c`: binds, the three policy maps, the global TLS
defaults, and certificates as runtime state (never part of the structure)."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest

from haplane.compose import ComposeOptions, compose, frontends_without_tls
from haplane.errors import ValidationError
from haplane.haproxy.check import check_rendered
from haplane.model.haproxy import Bind, EdgeTls, Globals
from haplane.model.records import FrontendSpec, Registry, RegistryCert, Service
from haplane.render import render, render_config
from haplane.testing_tls import TestCA
from haplane.tls.certs import parse_bundle
from haplane.tls.crtlist import CertFiles


def _options(d: Path) -> ComposeOptions:
    files = CertFiles(d)
    files.ensure_default()
    tls = EdgeTls((Bind("127.0.0.1", 8443),), str(files.default_path), str(files.crt_list_path),
                  str(d / "acme.map"), str(d / "tls-policy.map"), str(d / "hsts.map"), https_port=8443)
    g = Globals(log_target=None, tls_min_version="TLSv1.2", tls_ciphers="ECDHE-ECDSA-AES128-GCM-SHA256",
                tls_ciphersuites="TLS_AES_128_GCM_SHA256")
    return ComposeOptions(binds=(Bind("127.0.0.1", 8080),), globals=g, tls=tls, certs_dir=str(files.certs_dir),
                          host_map=str(d / "hosts.map"))


def _registry() -> Registry:
    leaf = TestCA().issue(["auto.test"])
    b = parse_bundle(leaf.chain_pem, leaf.key_pem, time.time())
    return Registry(
        services=(Service.from_dict({"predicate": "plain.test"}, name="plain"),
                  Service.from_dict({"predicate": "red.test", "tls": "redirect", "hsts": 3600}, name="red"),
                  Service.from_dict({"predicate": "off.test", "tls": "off"}, name="off"),
                  Service.from_dict({"predicate": "auto.test", "tls": "auto"}, name="auto"),
                  Service.from_dict({"predicate": "wait.test", "tls": "auto"}, name="wait"),
                  Service.from_dict({"mode": "path", "predicate": "/api"}, name="api")),
        certificates=(RegistryCert("auto", b.pem, b.info.sha1, b.info.hosts, b.info.not_after),),
        challenges=(("tok_1-a", "tok_1-a.thumb"),))


def test_maps_and_certificates(tmp_path: Path) -> None:
    opts = _options(tmp_path)
    cfg = compose(_registry(), opts)
    maps = dict(cfg.maps)
    assert maps[str(tmp_path / "tls-policy.map")] == "auto.test redirect\noff.test off\nred.test redirect\n"
    assert maps[str(tmp_path / "hsts.map")] == "red.test 3600\n"
    assert maps[str(tmp_path / "acme.map")] == "tok_1-a tok_1-a.thumb\n"
    assert [(c.name, c.path) for c in cfg.certificates] == [("auto", f"{opts.certs_dir}/auto.pem")]
    assert "PRIVATE KEY" not in repr(cfg)  # certificates never show their key in a repr (logs, fingerprints)
    # certificates and challenges are runtime state: a new one changes no structure (no reload)
    other = compose(replace(_registry(), certificates=(), challenges=()), opts)
    assert other.structure_key() == cfg.structure_key()
    # no HTTPS asked for: nothing of it in the config
    plain = render(compose(_registry(), replace(opts, tls=None, globals=Globals(log_target=None))))
    assert "ssl" not in plain and "acme" not in plain


def test_rendered_https_passes_haproxy_check(tmp_path: Path) -> None:
    if shutil.which("haproxy") is None:
        pytest.skip("no haproxy binary")
    cfg = compose(_registry(), _options(tmp_path))
    text = render(cfg)
    assert f"bind 127.0.0.1:8443 ssl crt {tmp_path}/tls/default.pem crt-list {tmp_path}/tls/crt-list " \
           "alpn h2,http/1.1" in text
    assert 'redirect location "https://%[var(txn.host)]:8443%[capture.req.uri]" code 308' in text
    assert "ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets" in text
    import asyncio

    result = asyncio.run(check_rendered(render_config(cfg), directory=tmp_path))
    assert result.ok, result.messages


def test_every_map_moves_with_its_path_for_the_check(tmp_path: Path) -> None:
    """Rendered.with_map_paths renders the HTTPS maps (as well as the host map) at the paths it is given."""
    cfg = compose(_registry(), _options(tmp_path))
    r = render_config(cfg)
    names = [name for name, _ in cfg.maps]
    assert sorted(names) == sorted(str(tmp_path / n) for n in ("hosts.map", "acme.map", "tls-policy.map", "hsts.map"))
    moved = r.with_map_paths({name: f"/elsewhere/map{n}" for n, name in enumerate(names)})
    assert len(moved.splitlines()) == len(r.text.splitlines())
    assert not any(name in moved for name in names) and all(f"/elsewhere/map{n}" in moved for n in range(len(names)))


def _tls_frontends() -> Registry:
    return replace(_registry(), frontends=(
        FrontendSpec.from_dict({"bind": "127.0.0.1:9443,127.0.0.1:9444", "backend": "plain", "tls": True},
                               name="secure"),
        FrontendSpec.from_dict({"bind": "127.0.0.1:9445", "backend": "plain", "mode": "tcp", "tls": True},
                               name="stream"),
        FrontendSpec.from_dict({"bind": "127.0.0.1:9446", "backend": "plain"}, name="clear")))


def test_thalassa_frontends_bind_with_tls_and_pass_haproxy_check(tmp_path: Path) -> None:
    """A Thalassa frontend with tls: true gets every bind as ssl with the agent's default certificate and
    crt-list (ALPN in http mode only) and X-Forwarded-Proto https; one without it is unchanged."""
    if shutil.which("haproxy") is None:
        pytest.skip("no haproxy binary")
    opts = _options(tmp_path)
    cfg = compose(_tls_frontends(), opts)
    text = render(cfg)
    ssl = f"ssl crt {tmp_path}/tls/default.pem crt-list {tmp_path}/tls/crt-list"
    section = text.split("frontend secure\n")[1].split("\n\n")[0]
    assert f"    bind 127.0.0.1:9443 {ssl} alpn h2,http/1.1\n    bind 127.0.0.1:9444 {ssl} alpn h2,http/1.1\n" \
           in section
    assert "http-request set-header X-Forwarded-Proto https" in section
    stream = text.split("frontend stream\n")[1].split("\n\n")[0]
    assert f"    bind 127.0.0.1:9445 {ssl}\n" in stream and "alpn" not in stream and "X-Forwarded" not in stream
    clear = text.split("frontend clear\n")[1].split("\n\n")[0]
    assert "    bind 127.0.0.1:9446\n" in clear and "ssl" not in clear
    import asyncio

    result = asyncio.run(check_rendered(render_config(cfg), directory=tmp_path))
    assert result.ok, result.messages
    # TLS on a frontend is structure (a bind line): turning it off is a different config, not a runtime change
    off = replace(_tls_frontends(), frontends=tuple(replace(f, tls=False) for f in _tls_frontends().frontends))
    assert compose(off, opts).structure_key() != cfg.structure_key()


def test_a_tls_frontend_is_left_out_by_an_agent_without_https(tmp_path: Path) -> None:
    opts = replace(_options(tmp_path), tls=None)
    reg = _tls_frontends()
    cfg = compose(reg, opts)
    assert [f.name for f in cfg.frontends] == ["http", "clear"]  # never served in plain text instead
    assert frontends_without_tls(reg, opts) == ["secure", "stream"]
    assert frontends_without_tls(reg, _options(tmp_path)) == []
    assert frontends_without_tls(reg, replace(opts, excluded=frozenset({"frontend:secure"}))) == ["stream"]


@pytest.mark.parametrize("bad", ["yes", 1, "true", [], {}])
def test_frontend_tls_must_be_a_boolean(bad: object) -> None:
    with pytest.raises(ValidationError) as exc:
        FrontendSpec.from_dict({"bind": "*:9443", "tls": bad}, where="frontend", name="secure")
    assert exc.value.field == "frontend.tls" and "true" in str(exc.value)


def test_frontend_tls_reads_back_only_when_true() -> None:
    on = FrontendSpec.from_dict({"bind": "*:9443", "tls": True}, name="secure")
    assert on.tls and on.to_dict()["tls"] is True
    assert FrontendSpec.from_dict(on.to_dict()) == on
    off = FrontendSpec.from_dict({"bind": "*:9443", "tls": False}, name="secure")
    assert "tls" not in off.to_dict()  # Thalassa's own shape, byte for byte
    assert FrontendSpec.from_dict({"bind": "*:9443", "tls": None}, name="secure") == off
