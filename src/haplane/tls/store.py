"""Typed certificate and ACME operations over a store (the write side: the API, the certificates directory, the
ACME client). Every write is one transaction guarded by compare-and-swap; a caller's ``If-Match`` revision
that is not the current one is ``PreconditionFailed``.

A certificate is two keys written and deleted together (``haplane.store.keys``): its public record and, apart,
its private key. Nothing here returns a key to a caller outside the process: ``get``/``list`` give the public
record; ``key_of`` exists for the node that serves it and for ``haplane status`` on the agent's own host.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from haplane.errors import NotFound, ValidationError
from haplane.registry.core import guard_write
from haplane.store import keys
from haplane.store.base import Compare, Delete, Op, Put, Store
from haplane.tls.certs import CertBundle, validate_cert_name
from haplane.tls.records import Certificate, CertificateKey, Challenge, OrderState, records_of

__all__ = ["CertificateStore"]


def _dumps(data: object) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


class CertificateStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    # --- certificates --------------------------------------------------------------------------------------

    async def put(self, name: str, bundle: CertBundle, source: str, if_match: int | None = None
                  ) -> tuple[Certificate, int, bool]:
        """Store a validated bundle under ``name``; (record, revision, created)."""
        cert, key = records_of(name, bundle, source)
        ck, kk = keys.certificate_key(name), keys.private_key_key(name)
        current, key_now = await self.store.get_many([ck, kk])  # one read at one revision
        guarded = guard_write(ck, current, if_match)
        compares = [guarded, Compare(kk, key_now.mod_revision if key_now else 0)]
        rev = await self.store.txn(compares, [Put(ck, _dumps(cert.to_dict())), Put(kk, _dumps(key.to_dict()))])
        return cert, rev, current is None

    async def get(self, name: str) -> tuple[Certificate, int]:
        kv = await self.store.get(keys.certificate_key(validate_cert_name(name)))
        if kv is None:
            raise NotFound("certificate", name)
        return Certificate.from_dict(json.loads(kv.value)), kv.mod_revision

    async def all(self) -> list[tuple[Certificate, int]]:
        kvs, _ = await self.store.range(keys.CERTIFICATES)
        out = []
        for kv in kvs:
            try:
                out.append((Certificate.from_dict(json.loads(kv.value)), kv.mod_revision))
            except (ValueError, KeyError, TypeError, ValidationError):
                continue  # a record the agent reports as bad; the list shows what can be read
        return out

    async def key_of(self, name: str) -> CertificateKey | None:
        kv = await self.store.get(keys.private_key_key(validate_cert_name(name)))
        return CertificateKey.from_dict(json.loads(kv.value)) if kv else None

    async def delete(self, name: str, if_match: int | None = None) -> int:
        ck = keys.certificate_key(validate_cert_name(name))
        current = await self.store.get(ck)
        if current is None:
            raise NotFound("certificate", name)
        return await self.store.txn([guard_write(ck, current, if_match)],
                                    [Delete(ck), Delete(keys.private_key_key(name))])

    async def replace_source(self, source: str, bundles: Mapping[str, CertBundle]) -> tuple[int, list[str]]:
        """Make the certificates owned by ``source`` exactly ``bundles`` (name → bundle) in one transaction: the
        certificates directory's view. Names another source owns are not taken over (they are skipped and
        named in the answer). Returns (revision, what changed in words)."""
        current = {c.name: (c, rev) for c, rev in await self.all()}
        compares: list[Compare] = []
        ops: list[Op] = []
        changes: list[str] = []
        for name, bundle in sorted(bundles.items()):
            have = current.get(name)
            if have is not None and have[0].source != source:
                changes.append(f"{name}: kept ({have[0].source} owns it)")
                continue
            cert, key = records_of(name, bundle, source)
            if have is not None and have[0].info.sha1 == cert.info.sha1 and have[0].key_sha256 == cert.key_sha256:
                continue
            compares.append(Compare(keys.certificate_key(name), have[1] if have else 0))
            ops += [Put(keys.certificate_key(name), _dumps(cert.to_dict())),
                    Put(keys.private_key_key(name), _dumps(key.to_dict()))]
            changes.append(f"{name}: {'replaced' if have else 'added'} (serial {cert.info.serial})")
        for name, (cert, rev) in sorted(current.items()):
            if cert.source == source and name not in bundles:
                compares.append(Compare(keys.certificate_key(name), rev))
                ops += [Delete(keys.certificate_key(name)), Delete(keys.private_key_key(name))]
                changes.append(f"{name}: removed")
        if not ops:
            return await self.store.revision(), [c for c in changes if "kept" in c]
        return await self.store.txn(compares, ops), changes

    # --- ACME ----------------------------------------------------------------------------------------------

    async def put_challenges(self, challenges: Sequence[Challenge]) -> int:
        return await self.store.txn([], [Put(keys.challenge_key(c.token), _dumps(c.to_dict())) for c in challenges])

    async def delete_challenges(self, tokens: Sequence[str]) -> int:
        return await self.store.txn([], [Delete(keys.challenge_key(t)) for t in tokens])

    async def challenges(self) -> list[Challenge]:
        kvs, _ = await self.store.range(keys.ACME_CHALLENGES)
        out = []
        for kv in kvs:
            try:
                out.append(Challenge.from_dict(json.loads(kv.value)))
            except (ValueError, KeyError, TypeError, ValidationError):
                continue
        return out

    async def put_order(self, state: OrderState) -> int:
        return await self.store.txn([], [Put(keys.order_key(state.name), _dumps(state.to_dict()))])

    async def orders(self) -> dict[str, OrderState]:
        kvs, _ = await self.store.range(keys.ACME_ORDERS)
        out = {}
        for kv in kvs:
            try:
                o = OrderState.from_dict(json.loads(kv.value))
                out[o.name] = o
            except (ValueError, KeyError, TypeError, ValidationError):
                continue
        return out

    async def account_key(self) -> str | None:
        """The shared ACME account key (PEM), or None."""
        kv = await self.store.get(keys.ACME_ACCOUNT)
        return str(json.loads(kv.value)["key"]) if kv else None

    async def create_account_key(self, key_pem: str, directory: str) -> str:
        """Keep ``key_pem`` as the account key unless another node stored one first; returns the one kept."""
        from haplane.errors import Conflict

        try:
            await self.store.txn([Compare(keys.ACME_ACCOUNT, 0)],
                                 [Put(keys.ACME_ACCOUNT, _dumps({"key": key_pem, "directory": directory}))])
            return key_pem
        except Conflict:
            kept = await self.account_key()
            assert kept is not None
            return kept
