"""The web UI: overview, activity and live stats pages, their JSON and SSE feeds, and the operator's actions.

Pages are plain HTML, CSS and JS shipped in ``haplane/api/ui`` (no build chain, nothing fetched from
elsewhere; a strict Content-Security-Policy says so to the browser). The page asks for a token once
(``/ui/login``, a POST form) and keeps the API's session cookie (HttpOnly, SameSite=Strict); ``GET
/ui/login?token=...`` (the link ``haplane up`` prints) answers a page that moves the token into a POST and
wipes it from the address bar and history before anything else happens.

Reads need the read role; actions the write role, and a cookie-authenticated action must carry the
session's CSRF nonce in ``X-CSRF-Token``. Actions change the registry (desired state), never HAProxy
directly: a drained server stays drained across reloads and on every node.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import math
import time
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse

from haplane import __version__
from haplane.api.auth import COOKIE, Principal, authenticate, require, start_session
from haplane.api.deps import ApiDeps
from haplane.api.routes._util import changed, json_body, object_body
from haplane.errors import Forbidden, HaplaneError, TooManyAttempts, Unauthorized, ValidationError
from haplane.model import values
from haplane.typing import AgentReader

PAGES = {"": "overview.html", "activity": "activity.html", "stats": "stats.html",
         "certificates": "certificates.html", "instance": "instance.html"}
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".svg": "image/svg+xml", ".html": "text/html; charset=utf-8", ".png": "image/png"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
                "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
HEARTBEAT = 15.0


def ui_dir() -> Path:
    return Path(str(resources.files("haplane.api") / "ui"))


def static_file(name: str) -> Path | None:
    """The file ``name`` under ``ui/static`` (``vendor/uplot/uPlot.iife.min.js``), or None when there is none or
    the name would leave the folder (no dot-segments, no hidden files, only known types)."""
    parts = name.split("/")
    if any(not p or p.startswith(".") for p in parts) or Path(name).suffix not in STATIC_TYPES:
        return None
    path = ui_dir() / "static" / Path(*parts)
    return path if path.is_file() else None


def _file(name: str) -> str:
    return (ui_dir() / name).read_text(encoding="utf-8")


def _same_origin(request: Request) -> None:
    """Refuse a form post from another site (login CSRF): browsers send ``Origin`` on every POST."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise Forbidden(f"a form posted from {origin} is not accepted here")


def login_page(error: str | None = None, token: str | None = None, status: int = 200) -> HTMLResponse:
    text = _file("login.html")
    err = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    text = text.replace("{{error}}", err).replace("{{token}}", html.escape(token or "", quote=True))
    text = text.replace("{{autosubmit}}", "1" if token else "")
    return HTMLResponse(text, status_code=status, headers=PAGE_HEADERS)


def sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":"), default=str))
    return ("\n".join(lines) + "\n\n").encode()


async def with_heartbeat(source: AsyncIterator[bytes], every: float = HEARTBEAT) -> AsyncIterator[bytes]:
    """``source``'s messages, and an SSE comment whenever it is quiet for ``every`` seconds (keeps proxies
    and the browser from closing an idle stream)."""
    it = source.__aiter__()
    nxt: asyncio.Task[bytes] | None = None
    try:
        while True:
            if nxt is None:
                nxt = asyncio.ensure_future(it.__anext__())
            done, _ = await asyncio.wait({nxt}, timeout=every)
            if not done:
                yield b": keep-alive\n\n"
                continue
            try:
                item = nxt.result()
            except StopAsyncIteration:
                return
            nxt = None
            yield item
    finally:
        if nxt is not None:
            nxt.cancel()
            with contextlib.suppress(BaseException):
                await nxt
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(BaseException):
                await aclose()


def names_doc(view: AgentReader, shown: dict[str, str] | None = None) -> dict[str, list[str | None]]:
    """"backend/slot" -> [service, instance] for the charts' legends (the agent's config now); a backend by the
    name ``shown`` gives it (see ``shown_names``)."""
    from haplane.accesslog import names_of

    shown = shown or {}
    return {f"{shown.get(b, b)}/{s}": [svc, inst] for (b, s), (svc, inst) in names_of(view.desired()).items()
            if inst is not None}


def shown_names(view: AgentReader) -> tuple[dict[str, str], frozenset[str]]:
    """HAProxy backend -> the name operators know it by, where they differ (a pool's spare shows the service it
    holds), and the free spares (no service's: left out of the charts)."""
    backends = view.desired().backends
    return ({b.name: b.shown for b in backends if b.shown != b.name},
            frozenset(b.name for b in backends if b.free_spare))


def shown_key(key: str, shown: dict[str, str]) -> str:
    """A stats series key "proxy/name" with its proxy as operators know it."""
    proxy, sep, rest = key.partition("/")
    return shown.get(proxy, proxy) + sep + rest


def stream(source: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(with_heartbeat(source), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def router(deps: ApiDeps) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    read = Depends(require(deps.settings, "read"))
    write = Depends(require(deps.settings, "write"))
    reg = deps.registry

    async def signed_in(request: Request) -> Principal | None:
        try:
            return await authenticate(request, deps.settings)
        except (Unauthorized, Forbidden, TooManyAttempts):
            return None

    # --- pages -----------------------------------------------------------------------------------------

    @r.get("/", include_in_schema=False)  # where Thalassa's UI answered
    @r.get("/ui")
    async def ui_root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=303)

    async def page(request: Request, name: str) -> Response:
        if await signed_in(request) is None:
            return RedirectResponse("/ui/login", status_code=303, headers={"Cache-Control": "no-store"})
        return HTMLResponse(_file(PAGES[name]).replace("{{version}}", html.escape(__version__)), headers=PAGE_HEADERS)

    @r.get("/ui/")
    async def overview_page(request: Request) -> Response:
        return await page(request, "")

    @r.get("/ui/activity")
    async def activity_page(request: Request) -> Response:
        return await page(request, "activity")

    @r.get("/ui/stats")
    async def stats_page(request: Request) -> Response:
        return await page(request, "stats")

    @r.get("/ui/certificates")
    async def certificates_page(request: Request) -> Response:
        return await page(request, "certificates")

    @r.get("/ui/instance")
    async def instance_page(request: Request) -> Response:
        return await page(request, "instance")

    @r.get("/ui/static/{name:path}")
    async def static(name: str) -> Response:
        path = static_file(name)
        if path is None:
            return JSONResponse({"error": "NotFound", "field": None, "detail": f"no static file {name!r}"}, 404)
        # vendored libraries never change within a version of haplane: cache them; our own files revalidate
        cache = "public, max-age=86400" if name.startswith("vendor/") else "no-cache"
        return Response(path.read_bytes(), media_type=STATIC_TYPES[path.suffix],
                        headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"})

    # --- sessions --------------------------------------------------------------------------------------

    @r.get("/ui/login")
    async def login_form(request: Request, token: str | None = None) -> Response:
        if token:
            # answered as a page that POSTs the token and wipes it from the address bar and history first
            return login_page(token=token)
        if not deps.settings.all_tokens():
            return RedirectResponse("/ui/", status_code=303)  # an open API (loopback, no token): nothing to ask
        return login_page()

    @r.post("/ui/login")
    async def login_post(request: Request) -> Response:
        _same_origin(request)
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip()
        if not token:
            return login_page("Enter a token.", status=400)
        try:
            cookie, _sess = start_session(request, deps.settings, token)
        except Unauthorized:
            return login_page("That token is not known here.", status=401)
        except TooManyAttempts as exc:
            return login_page(f"Too many wrong tokens from here: try again in {math.ceil(exc.retry_after)} s.",
                              status=429)
        from haplane.api.routes.system import set_session_cookie

        resp = RedirectResponse("/ui/", status_code=303, headers={"Cache-Control": "no-store",
                                                                   "Referrer-Policy": "no-referrer"})
        set_session_cookie(resp, deps, cookie)
        return resp

    @r.post("/ui/logout")
    async def logout(request: Request) -> Response:
        _same_origin(request)
        from haplane.api.routes.system import end_session

        await end_session(request, deps)
        resp = RedirectResponse("/ui/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    # --- reads -----------------------------------------------------------------------------------------

    async def overview_doc() -> dict[str, Any]:
        if deps.agent is not None:
            doc: dict[str, Any] = await deps.agent.overview()
            return doc
        from haplane.agent.runner import agent_options
        from haplane.compose import compose
        from haplane.overview import build

        snapshot = await reg.snapshot()
        options = agent_options(deps.settings, deps.settings.state_dir.expanduser().resolve()).compose
        doc = build(compose(snapshot, options), snapshot)
        doc["agent"] = None
        return doc

    @r.get("/ui/api/overview")
    async def overview(_: Principal = read) -> dict[str, Any]:
        return await overview_doc()

    def activity_query(request: Request) -> dict[str, Any]:
        q = request.query_params
        limit = q.get("limit", "500")
        since = q.get("since") or request.headers.get("last-event-id") or "0"
        if not limit.isdigit() or not since.isdigit():
            raise ValidationError("limit" if not limit.isdigit() else "since", limit if not limit.isdigit()
                                  else since, "must be a whole number")
        return {"service": q.get("service") or None, "kind": q.get("kind") or None,
                "result": q.get("result") or None, "since": int(since), "limit": min(int(limit), 10_000)}

    @r.get("/ui/api/activity")
    async def activity(request: Request, _: Principal = read) -> dict[str, Any]:
        if deps.agent is None:
            return {"records": [], "agent": False}
        recs = deps.agent.activity.query(**activity_query(request))
        return {"records": [rec.to_dict() for rec in recs], "agent": True}

    @r.get("/ui/api/stats")
    async def stats(window: int = 300, series: bool = True, page: int = 0, per_page: int = 12, q: str = "",
                    idle: bool = False, _: Principal = read) -> dict[str, Any]:
        """The charts' data, one page at a time (busiest backends first, then frontends): a fleet of thousands
        of servers sends only what the page draws."""
        if window not in (300, 900, 3600):
            raise ValidationError("window", window, "must be 300, 900 or 3600 (seconds)")
        if page < 0 or not 1 <= per_page <= 100:
            raise ValidationError("page" if page < 0 else "per_page", page if page < 0 else per_page,
                                  "must be 0 or more" if page < 0 else "must be 1 to 100")
        view = deps.agent
        sampler = view.stats if view is not None else None
        if view is None or sampler is None:
            return {"live": False, "series": {}, "interval": None}
        sampler.touch()
        if not sampler.series:
            await sampler.fresh(0)
        as_known, free = shown_names(view)  # a pool's spare is charted as the service it holds
        ranked = [(p, kind, busy) for p, kind, busy in sampler.busiest()
                  if p not in free and (idle or busy > 0) and q.lower() in as_known.get(p, p).lower()]
        pages = max(1, -(-len(ranked) // per_page))
        page = min(page, pages - 1)
        shown = ranked[page * per_page:(page + 1) * per_page]
        history = sampler.history(window, {p for p, _, _ in shown}) if series else {}
        return {"live": True, "interval": sampler.interval, "window": window,
                "fields": ["t", "req", "err", "rtime", "scur"], "error": sampler.error,
                "series": {shown_key(k, as_known): v for k, v in history.items()},
                "order": [{"proxy": as_known.get(p, p), "kind": kind, "busy": round(busy, 3)}
                          for p, kind, busy in shown],
                "page": page, "pages": pages, "total": len(ranked), "names": names_doc(view, as_known)}

    @r.get("/ui/api/instance/{service}/{iid}")
    async def instance(service: str, iid: str, window: int = 900, _: Principal = read) -> dict[str, Any]:
        """One instance: its record, the servers (slots) it holds now with HAProxy's view, its traffic, and its
        history: every change the agent made to its slots since it took them (states, weights, drains)."""
        if window not in (300, 900, 3600):
            raise ValidationError("window", window, "must be 300, 900 or 3600 (seconds)")
        inst, rev = await reg.get_instance(service, iid)
        doc = await overview_doc()
        servers = [{**s, "backend": b["name"]} for b in doc["backends"] for s in b["servers"]
                   if s["instance"] == iid and s["service"] == service]
        history: list[dict[str, Any]] = []
        series: dict[str, list[list[float]]] = {}
        if deps.agent is not None:
            slots = {f"{s['backend']}/{s['name']}" for s in servers}
            since: dict[str, float] = {}
            records = deps.agent.activity.query(limit=10_000)
            for rec in records:  # when did each slot take this instance (a slot is reused after its rest)
                if rec.subject in slots and rec.kind == "server-add" and f"instance {iid} " in rec.reason + " ":
                    since[rec.subject] = rec.time if rec.subject not in since else min(since[rec.subject], rec.time)
            history = [rec.to_dict() for rec in records
                       if (rec.subject in slots and rec.time >= since.get(rec.subject, 0.0))
                       or f"instance {iid} " in rec.reason + " "]
            sampler = deps.agent.stats
            if sampler is not None:
                sampler.touch()
                as_known, _free = shown_names(deps.agent)
                everything = {shown_key(k, as_known): v for k, v in sampler.history(window).items()}
                series = {k: v for k, v in everything.items() if k in slots}
        return {"instance": {**inst.to_dict(), "revision": rev}, "servers": servers, "history": history,
                "series": series, "window": window, "live": deps.agent is not None}

    @r.get("/ui/api/plan")
    async def plan(_: Principal = read) -> dict[str, Any]:
        if deps.agent is None:
            raise ValidationError("agent", None, "a dry run needs an agent in this process (haplane up); run "
                                                 "`haplane plan` on the agent's host instead")
        doc: dict[str, Any] = await deps.agent.plan_preview()
        return doc

    # --- live streams (Server-Sent Events) ------------------------------------------------------------------

    @r.get("/ui/api/stream/overview")
    async def stream_overview(_: Principal = read) -> StreamingResponse:
        async def gen() -> AsyncIterator[bytes]:
            last = None
            while True:
                try:
                    doc = await overview_doc()
                except HaplaneError as exc:
                    doc = {"error": str(exc)}
                key = json.dumps({k: v for k, v in doc.items() if k != "sampled_at"}, sort_keys=True, default=str)
                if key != last:
                    last = key
                    yield sse("overview", doc)
                await asyncio.sleep(1.0)

        return stream(gen())

    @r.get("/ui/api/stream/activity")
    async def stream_activity(request: Request, _: Principal = read) -> StreamingResponse:
        q = activity_query(request)

        async def gen() -> AsyncIterator[bytes]:
            if deps.agent is None:
                yield sse("info", {"agent": False})
                while True:
                    await asyncio.sleep(3600)
            async for rec in deps.agent.activity.follow(q["since"]):
                if (q["service"] is None or rec.service == q["service"]) and \
                        (q["kind"] is None or rec.kind == q["kind"]) and \
                        (q["result"] is None or rec.result == q["result"]):
                    yield sse("activity", rec.to_dict(), rec.seq)

        return stream(gen())

    @r.get("/ui/api/stream/stats")
    async def stream_stats(_: Principal = read) -> StreamingResponse:
        sampler = deps.agent.stats if deps.agent is not None else None

        async def gen() -> AsyncIterator[bytes]:
            if sampler is None:
                yield sse("info", {"live": False})
                while True:
                    await asyncio.sleep(3600)
            assert deps.agent is not None
            as_known, _free = shown_names(deps.agent)  # a pool's spare as the service it holds
            yield sse("history", {"series": {shown_key(k, as_known): v for k, v in sampler.history().items()},
                                  "interval": sampler.interval, "t": time.time()})
            async for tick in sampler.ticks():
                as_known, _free = shown_names(deps.agent)
                points = tick.get("points")
                if as_known and isinstance(points, dict):
                    tick = {**tick, "points": {shown_key(k, as_known): v for k, v in points.items()}}
                yield sse("tick", tick)

        return stream(gen())

    # --- actions (the registry's desired state) ----------------------------------------------------------

    async def change_instance(request: Request, service: str, iid: str, **fields: Any) -> dict[str, Any]:
        # a PATCH: only these fields change; an operator's click never undoes a change made meanwhile
        new, new_rev = await reg.patch_instance(service, iid, fields)
        what = ", ".join(f"{k}={v}" for k, v in fields.items())
        changed(request, f"instance {service}/{iid}: {what} (from the UI) at revision {new_rev}")
        return {**new.to_dict(), "revision": new_rev}

    @r.post("/ui/api/instances/{service}/{iid}/state")
    async def set_state(service: str, iid: str, request: Request, _: Principal = write) -> dict[str, Any]:
        d = object_body(await json_body(request))
        state = values.choice(d.get("state"), "state", ("ready", "drain", "maint"))
        return await change_instance(request, service, iid, state=state)

    @r.post("/ui/api/instances/{service}/{iid}/weight")
    async def set_weight(service: str, iid: str, request: Request, _: Principal = write) -> dict[str, Any]:
        d = object_body(await json_body(request))
        weight = values.weight(d.get("weight"), "weight")
        # pinned: a source's next view of the instance keeps the operator's weight (see Instance.weight_override)
        return await change_instance(request, service, iid, weight=weight, weight_override=weight)

    return r
