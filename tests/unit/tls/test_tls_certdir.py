"""The certificates directory: files → one source-owned set in the store (a real memory:// store)."""

from __future__ import annotations

import os
from pathlib import Path

from haplane.store import open_store
from haplane.testing_tls import TestCA
from haplane.tls.certdir import CertDirSource
from haplane.tls.certs import parse_bundle
from haplane.tls.store import CertificateStore

CA = TestCA()


async def test_files_added_changed_removed_and_bad_ones_skipped(tmp_path: Path) -> None:
    store = open_store("memory://")
    certs = CertificateStore(store)
    a, b = CA.issue(["a.test"]), CA.issue(["b.test"])
    (tmp_path / "a.pem").write_text(a.pem)  # combined
    (tmp_path / "b.pem").write_text(b.chain_pem)  # the key beside it
    (tmp_path / "b.key").write_text(b.key_pem)
    (tmp_path / "bad.pem").write_text(a.chain_pem + b.key_pem)  # a key of another certificate
    (tmp_path / "notes.txt").write_text("ignored")
    src = CertDirSource(tmp_path, certs, interval=0.01)
    changes = await src.sync_once()
    assert sorted(changes) == [f"a: added (serial {a.serial:X})", f"b: added (serial {b.serial:X})"]
    assert "does not match" in src.skipped["bad.pem"]
    listed = {c.name: c for c, _ in await certs.all()}
    assert sorted(listed) == ["a", "b"] and listed["a"].source == src.source
    assert (await certs.key_of("b")) is not None

    # an API certificate of the same name is not taken over
    api = CA.issue(["api.test"])
    await certs.put("api", parse_bundle(api.chain_pem, api.key_pem, 0 + __import__("time").time()), "api")
    (tmp_path / "api.pem").write_text(CA.issue(["api.test"]).pem)
    a2 = CA.issue(["a.test"])
    (tmp_path / "a.pem").write_text(a2.pem)
    os.unlink(tmp_path / "b.pem")
    changes = await src.sync_once()
    assert sorted(changes) == [f"a: replaced (serial {a2.serial:X})", "api: kept (api owns it)", "b: removed"]
    listed = {c.name: c for c, _ in await certs.all()}
    assert listed["api"].source == "api" and listed["api"].info.serial == f"{api.serial:X}"
    assert sorted(listed) == ["a", "api"]
    assert await src.sync_once() == ["api: kept (api owns it)"]  # nothing else changed: nothing written
    await store.close()


async def test_metrics_show_certificate_expiry_and_acme_orders() -> None:
    import time
    from collections import Counter

    from prometheus_client import CollectorRegistry

    from haplane.metrics import Metrics

    store = open_store("memory://")
    leaf = CA.issue(["m.test"], days=20)
    await CertificateStore(store).put("m", parse_bundle(leaf.chain_pem, leaf.key_pem, time.time()), "api")
    m = Metrics(CollectorRegistry(), store=store)

    class _Acme:
        results = Counter({"issued": 2, "failed": 1})

    m.acme = _Acme()
    text = (await m.scrape()).decode()
    from prometheus_client.parser import text_string_to_metric_families

    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(text) for s in fam.samples}
    key = ("haplane_certificate_expiry_timestamp_seconds", (("name", "m"), ("source", "api")))
    assert samples[key] == leaf.cert.not_valid_after_utc.timestamp()
    assert 'haplane_acme_orders_total{result="issued"} 2.0' in text
    assert 'haplane_acme_orders_total{result="failed"} 1.0' in text
    await store.close()
