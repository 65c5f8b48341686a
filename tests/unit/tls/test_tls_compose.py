"""HTTPS in compose and render (pure), held to real `haproxy -c`: binds, the three policy maps, the global TLS
defaults, and certificates as runtime state (never part of the structure)."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest

from haplane.compose import ComposeOptions, compose
from haplane.haproxy.check import check_rendered
from haplane.model.haproxy import Bind, EdgeTls, Globals
from haplane.model.records import Registry, RegistryCert, Service
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
