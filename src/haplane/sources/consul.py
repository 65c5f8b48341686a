"""Consul's catalog as a source (Thalassa's service registry): the healthy instances of a Consul service, with
their version, as one source-owned set, so Thalassa-style dynamic backends (name + version) follow them.

- Reads ``GET /v1/health/service/NAME?passing=true`` (only instances whose every check passes) with Consul's
  blocking queries: ``index`` = the last ``X-Consul-Index``, ``wait`` = ``--wait`` (default 60 s). As Consul's
  docs ask: an index that goes backwards resets to 0 (a plain query next, then blocking again); an index of 0
  or less is treated as 1; a blocking answer that came back at once without a change waits ``min_interval``
  before the next query, so a misbehaving server is never hammered.
- Address: the service's ``Address``, else its node's ``Address``. Instance id: ``<node>-<service id>``
  (characters outside ``A-Za-z0-9_.-`` become ``-``).
- Version: from a tag ``<prefix><version>`` (``--version-from tag``, prefix ``version=`` by default, so a tag
  ``version=1.2`` gives ``1.2``) or from ``ServiceMeta[<key>]`` (``--version-from meta``, key ``version``).
  An entry whose version is missing stays routable without a version (a plain service backend uses it; a
  dynamic backend does not); an entry with an invalid address, port or version is skipped and logged, naming
  it.
- The set goes to haplane service ``--as NAME`` (default: the Consul service's name), source id
  ``consul-<service>``. It is pushed at start and whenever it changes.
- Errors (Consul down, 5xx, bad JSON, no X-Consul-Index) back off exponentially (0.2 s up to ``max_backoff``)
  and never touch the set: the last good view stays until Consul answers again.
- Consul as production runs it: an ``https://`` address with ``cacert`` (the CA of Consul's certificate;
  default: the system's), ``cert``/``key`` (a client certificate, for ``verify_incoming``), and an ACL ``token``
  sent as ``X-Consul-Token``. Settings ``consul_address``, ``consul_token``, ``consul_cacert``, ``consul_cert``,
  ``consul_key``; else Consul's own variables ``CONSUL_HTTP_ADDR``, ``CONSUL_HTTP_TOKEN``, ``CONSUL_CACERT``,
  ``CONSUL_CLIENT_CERT``, ``CONSUL_CLIENT_KEY`` (and ``CONSUL_HTTP_SSL=true`` for an address without a scheme).
  An unknown token (``403 ACL not found``) is an error naming the setting; an answer Consul filtered by ACLs
  (``X-Consul-Results-Filtered-By-ACLs: true``: the token may not read every entry) is refused rather than
  taken for the truth, so a missing permission never empties a backend.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from haplane.backoff import backoff_delay
from haplane.errors import ConfigurationError, HaplaneError, SourceUnavailable, ValidationError
from haplane.model import values as v
from haplane.model.records import Instance
from haplane.sources.base import Sink

__all__ = ["ConsulSource", "instances_from_catalog", "instances_from_health"]

log = logging.getLogger("haplane.sources.consul")

_ID_BAD = re.compile(r"[^A-Za-z0-9_.-]")
_HOSTNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # a Consul node name kept as the instance's hostname


def _instance_id(node: str, service_id: str) -> str:
    raw = _ID_BAD.sub("-", f"{node}-{service_id}").strip("-.") or "instance"
    if not raw[0].isalnum():
        raw = "i" + raw
    return raw[:100]


def entry_version(entry: Mapping[str, Any], version_from: str, tag_prefix: str, meta_key: str) -> str | None:
    svc = entry.get("Service") or {}
    if version_from == "meta":
        value = (svc.get("Meta") or {}).get(meta_key)
        return str(value) if value not in (None, "") else None
    for tag in svc.get("Tags") or []:
        if isinstance(tag, str) and tag.startswith(tag_prefix) and len(tag) > len(tag_prefix):
            return tag[len(tag_prefix):]
    return None


def instances_from_health(entries: Any, service: str, *, version_from: str = "tag", tag_prefix: str = "version=",
                          meta_key: str = "version", weight: int = 10) -> list[Instance]:
    """Pure: the instances of a ``/v1/health/service/...?passing=true`` answer, sorted by id. Entries that do
    not make a valid instance are skipped with a warning naming them."""
    if not isinstance(entries, list):
        raise ValidationError("body", type(entries).__name__, "must be a JSON array of service entries")
    out: dict[str, Instance] = {}
    for n, entry in enumerate(entries):
        where = f"entry {n}"
        try:
            if not isinstance(entry, dict):
                raise ValidationError(where, entry, "must be an object with Node and Service")
            svc, node = entry.get("Service") or {}, entry.get("Node") or {}
            checks = entry.get("Checks") or []
            if any(isinstance(c, dict) and c.get("Status") != "passing" for c in checks):
                continue  # a server without ?passing=true, or a check that changed meanwhile: not routable
            sid = str(svc.get("ID") or svc.get("Service") or "")
            where = f"{node.get('Node', '?')}/{sid or '?'}"
            iid = _instance_id(str(node.get("Node") or "node"), sid)
            address = svc.get("Address") or node.get("Address")
            version = entry_version(entry, version_from, tag_prefix, meta_key)
            node_name = node.get("Node")
            hostname = node_name if isinstance(node_name, str) and _HOSTNAME.fullmatch(node_name) else None
            inst = Instance.from_dict({"id": iid, "service": service, "address": address, "port": svc.get("Port"),
                                       "version": version, "weight": weight, "hostname": hostname}, where)
        except ValidationError as exc:
            log.warning("consul: skipping %s: %s", where, exc)
            continue
        out[inst.id] = inst
    return [out[k] for k in sorted(out)]


def instances_from_catalog(entries: Any, service: str, *, version_from: str = "tag", tag_prefix: str = "version=",
                           meta_key: str = "version", weight: int = 10) -> list[Instance]:
    """Pure: the instances of a ``/v1/catalog/service/...`` answer (flat entries: ``Node``, ``Address``,
    ``ServiceID``, ``ServiceAddress``, ``ServicePort``, ``ServiceTags``, ``ServiceMeta``), sorted by id. The catalog
    knows no health: every registered entry counts. Entries that do not make a valid instance are skipped with a
    warning naming them."""
    if not isinstance(entries, list):
        raise ValidationError("body", type(entries).__name__, "must be a JSON array of catalog entries")
    as_health = []
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict):
            log.warning("consul: skipping catalog entry %d: not an object", n)
            continue
        as_health.append({"Node": {"Node": entry.get("Node"), "Address": entry.get("Address")},
                          "Service": {"ID": entry.get("ServiceID"), "Service": entry.get("ServiceName"),
                                      "Address": entry.get("ServiceAddress"), "Port": entry.get("ServicePort"),
                                      "Tags": entry.get("ServiceTags"), "Meta": entry.get("ServiceMeta")}})
    return instances_from_health(as_health, service, version_from=version_from, tag_prefix=tag_prefix,
                                 meta_key=meta_key, weight=weight)


class ConsulSource:
    def __init__(self, service: str, *, address: str = "http://127.0.0.1:8500", target: str | None = None,
                 version_from: str = "tag", tag_prefix: str = "version=", meta_key: str = "version",
                 wait: float = 60.0, token: str | None = None, datacenter: str | None = None,
                 weight: int = 10, max_backoff: float = 30.0, min_interval: float = 0.05,
                 name: str | None = None, cacert: str | None = None, cert: str | None = None,
                 key: str | None = None) -> None:
        if not service or "/" in service:
            raise ConfigurationError(f"consul source: service {service!r} must be a Consul service name")
        self.service = service
        self.target = v.name(target or service, "as")
        if version_from not in ("tag", "meta"):
            raise ConfigurationError(f"consul source: version_from {version_from!r}: expected tag or meta")
        if not address.startswith(("http://", "https://")):
            address = "http://" + address
        if not wait > 0:
            raise ConfigurationError(f"consul source: wait {wait!r} must be a positive number of seconds")
        self.address = address.rstrip("/")
        self.verify = self._tls(cacert, cert, key)
        self.version_from = version_from
        self.tag_prefix = tag_prefix
        self.meta_key = meta_key
        self.wait = wait
        self.token = token
        self.datacenter = datacenter
        self.weight = v.weight(weight, "weight")
        self.max_backoff = max_backoff
        self.min_interval = min_interval
        self.name = v.name(name or f"consul-{_ID_BAD.sub('-', service)}"[:100], "source")
        self.index = 0  # the last X-Consul-Index we acted on
        self.resets = 0  # times the index went backwards
        self.errors = 0
        self.queries = 0
        self.pushed: list[Instance] | None = None

    def _tls(self, cacert: str | None, cert: str | None, key: str | None) -> ssl.SSLContext | bool:
        """The TLS context for an https address (True: the system's CAs); files checked now, named if bad."""
        if bool(cert) != bool(key):
            raise ConfigurationError("consul source: a client certificate needs both consul_cert and consul_key")
        if not (cacert or cert):
            return True
        if not self.address.startswith("https://"):
            raise ConfigurationError(f"consul source: consul_cacert/consul_cert given for {self.address}: use an "
                                     "https:// address")
        for what, path in (("consul_cacert", cacert), ("consul_cert", cert), ("consul_key", key)):
            if path and not Path(path).is_file():
                raise ConfigurationError(f"consul source: {what} {path!r} is not a readable file")
        try:
            ctx = ssl.create_default_context(cafile=cacert or None)
            if cert:
                ctx.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigurationError(f"consul source: cannot use the TLS files ({exc})") from None
        return ctx

    def _params(self) -> dict[str, str]:
        params = {"passing": "true"}
        if self.datacenter:
            params["dc"] = self.datacenter
        if self.index > 0:
            params["index"] = str(self.index)
            params["wait"] = f"{int(self.wait * 1000)}ms"
        return params

    async def query(self, client: Any) -> tuple[list[Instance], int]:
        """One (blocking, once an index is known) health query: (instances, X-Consul-Index)."""
        import httpx

        try:
            resp = await client.get(f"/v1/health/service/{self.service}", params=self._params())
        except (httpx.HTTPError, ssl.SSLError) as exc:
            raise SourceUnavailable(f"consul {self.address}: {_transport_error(exc)}") from None
        self.queries += 1
        if resp.status_code == 403:
            which = "the token (consul_token, CONSUL_HTTP_TOKEN)" if self.token else "no token (set consul_token)"
            raise SourceUnavailable(f"consul {self.address}: 403 {resp.text.strip()[:200]!r}: Consul refused "
                                    f"{which}")
        if resp.status_code != 200:
            raise SourceUnavailable(f"consul {self.address}: {resp.status_code} {resp.text[:200]!r}")
        if resp.headers.get("X-Consul-Results-Filtered-By-ACLs", "").lower() == "true":
            which = "the token" if self.token else "the anonymous token (no consul_token set)"
            raise SourceUnavailable(f"consul {self.address}: Consul filtered the answer by ACLs: {which} may not "
                                    f"read every entry of {self.service!r} (needs service:read and node:read); "
                                    "not taking a partial view")
        raw_index = resp.headers.get("X-Consul-Index")
        try:
            index = int(raw_index) if raw_index is not None else None
        except ValueError:
            index = None
        if index is None:
            raise SourceUnavailable(f"consul {self.address}: answer without a valid X-Consul-Index "
                                    f"({raw_index!r})")
        try:
            body = resp.json()
        except ValueError:
            raise SourceUnavailable(f"consul {self.address}: the answer is not JSON") from None
        try:
            instances = instances_from_health(body, self.target, version_from=self.version_from,
                                              tag_prefix=self.tag_prefix, meta_key=self.meta_key,
                                              weight=self.weight)
        except ValidationError as exc:
            raise SourceUnavailable(f"consul {self.address}: {exc}") from None
        return instances, index

    def _next_index(self, index: int) -> int:
        """Consul's rules for the index of the next blocking query."""
        if index < self.index:  # went backwards (snapshot restore, server reset): start over
            self.resets += 1
            log.info("consul: X-Consul-Index went backwards (%d -> %d): resetting", self.index, index)
            return 0
        return max(1, index)

    async def run(self, sink: Sink) -> None:
        import httpx

        headers = {"X-Consul-Token": self.token} if self.token else {}
        failures = 0
        async with httpx.AsyncClient(base_url=self.address, headers=headers, verify=self.verify, trust_env=False,
                                     timeout=httpx.Timeout(10.0, read=self.wait + self.wait / 16 + 10)) as client:
            while True:
                started = asyncio.get_running_loop().time()
                before = self.index
                try:
                    instances, index = await self.query(client)
                    if self.pushed != instances:
                        await sink.replace(self.name, instances)
                        log.info("%s: %d healthy (%s)", self.name, len(instances),
                                 ", ".join(f"{i.id}@{i.version}" for i in instances) or "none")
                        self.pushed = instances
                    self.index = self._next_index(index)
                    failures = 0
                    quick = asyncio.get_running_loop().time() - started < self.min_interval
                    if before > 0 and self.index == before and quick:
                        await asyncio.sleep(self.min_interval)  # came back at once, unchanged: rate-limit
                    continue
                except SourceUnavailable as exc:
                    what = f"Consul is unavailable ({exc}); keeping the last view"
                except HaplaneError as exc:  # the sink refused: send the whole set again next time
                    self.pushed = None
                    what = f"could not push the Consul view ({exc})"
                failures += 1
                self.errors += 1
                self.index = 0
                delay = backoff_delay(failures, 0.2, self.max_backoff)
                log.warning("%s: %s; retrying in %.1fs", self.name, what, delay)
                await asyncio.sleep(delay)


def _transport_error(exc: BaseException) -> str:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"its TLS certificate is not trusted ({seen.verify_message}); check consul_cacert"
        if isinstance(seen, ssl.SSLError):
            return f"TLS failed ({seen}); check consul_cert/consul_key and consul_cacert"
        seen = seen.__cause__ or seen.__context__
    return repr(exc)
