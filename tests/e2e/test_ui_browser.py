"""The web UI end to end, in headless Chromium (Debian's, driven by Playwright), against a running haplane: a real
agent and HAProxy, the API and UI served over HTTP, real HTTP backends behind HAProxy.

Screenshots of every page are written to $HAPLANE_ARTIFACTS (default: tests/screenshots) and their paths printed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright
from tests.integration.ui.conftest import READ, WRITE, Haplane, running_haplane
from tests.support.procs import HttpBackend, MakeHttpBackend

from haplane.model.records import Instance, Service

pytestmark = pytest.mark.e2e


SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"  # tests/screenshots: git-ignored


def artifacts_dir(tmp_path: Path) -> Path:
    d = Path(os.environ.get("HAPLANE_ARTIFACTS") or SCREENSHOTS)
    d.mkdir(parents=True, exist_ok=True)
    return d


async def shot(page: Page, d: Path, name: str) -> None:
    path = d / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


@contextlib.asynccontextmanager
async def browser(chromium_bin: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=chromium_bin, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            await b.close()


@contextlib.asynccontextmanager
async def traffic(hp: Haplane, host: str) -> AsyncIterator[list[int]]:
    """Requests through HAProxy, about 50 a second, until the block ends; yields [answers, 5xx answers]."""
    counts = [0, 0]

    async def run() -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                with contextlib.suppress(httpx.TransportError):
                    r = await client.get(hp.rig.proxy + "/", headers={"Host": host})
                    counts[0] += 1
                    counts[1] += r.status_code >= 500
                await asyncio.sleep(0.02)

    task = asyncio.create_task(run())
    try:
        yield counts
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def login(page: Page, hp: Haplane, token: str) -> None:
    """Through the link `haplane up` prints: the token must leave the address bar and the history."""
    await page.goto(f"{hp.url}/ui/login?token={token}")
    await page.wait_for_url(f"{hp.url}/ui/")
    assert token not in page.url
    await page.go_back()
    assert token not in page.url, "the login link's token is still in the history"
    await page.goto(f"{hp.url}/ui/")


async def hits_while(b: HttpBackend, seconds: float) -> int:
    before = b.hits
    await asyncio.sleep(seconds)
    return b.hits - before


async def test_overview_drain_activity_and_live_charts(tmp_path: Path, http_backends: MakeHttpBackend,
                                                       chromium_bin: str) -> None:
    shots = artifacts_dir(tmp_path)
    async with running_haplane(tmp_path) as hp, browser(chromium_bin) as b:
        reg = hp.rig.reg
        await reg.put_service(Service("shop", "host", "shop.test"))
        await hp.rig.settled()
        b1, b2 = http_backends("shop-1"), http_backends("shop-2")
        await reg.put_instance(Instance("shop-a", "shop", b1.host, b1.port, version="1.0", zone="z1"))
        await reg.put_instance(Instance("shop-b", "shop", b2.host, b2.port, version="1.0", zone="z2"))
        await hp.rig.until_status("shop.test", 200)

        page = await b.new_page(viewport={"width": 1400, "height": 900})
        await login(page, hp, WRITE)
        await page.wait_for_selector('tr[data-instance="shop-a"]')

        async with traffic(hp, "shop.test") as sent:
            # an instance registered now appears on the open page, live
            b3 = http_backends("shop-3")
            new, _, _ = await reg.put_instance(Instance("shop-c", "shop", b3.host, b3.port, version="1.1",
                                                        zone="z3"))
            row = 'tr[data-instance="shop-c"]'
            await page.wait_for_selector(f'{row}[data-state="up"]', timeout=10_000)
            assert await page.inner_text(f"{row} td:nth-child(3)") == f"{b3.host}:{b3.port}"
            await page.fill("#search", "shop-c")
            assert await page.locator("#backends tr[data-server]:not(.hidden)").count() == 1
            await shot(page, shots, "overview-search")
            await page.fill("#search", "")
            await asyncio.sleep(1.0)
            assert b3.hits > 0, "the new instance gets requests before it is drained"

            # drain it from the UI: the registry changes, HAProxy drains, no new request reaches it
            await page.click(f'{row} button[data-action="drain"]')
            await page.wait_for_selector(f'{row}[data-state="draining"]', timeout=10_000)
            inst, _ = await reg.get_instance("shop", "shop-c")
            assert inst.state == "drain"
            await asyncio.sleep(0.3)  # requests already in flight when HAProxy drained it
            answered = sent[0]
            assert await hits_while(b3, 1.5) == 0, "a drained server still gets new requests"
            assert sent[0] - answered >= 20 and b1.hits + b2.hits > 0
            await shot(page, shots, "overview")

            # the activity page shows both changes: the server added and then drained
            slot = f"shop/s{new.slot}"
            await page.goto(f"{hp.url}/ui/activity")
            await page.wait_for_selector(f'#activity tr[data-kind="server-add"]:has(code:text-is("{slot}"))')
            await page.wait_for_selector(f'#activity tr[data-kind="server-state"]:has(code:text-is("{slot}"))')
            drained = page.locator(f'#activity tr[data-kind="server-state"]:has(code:text-is("{slot}"))')
            assert "drain" in (await drained.first.inner_text())
            # the command as HAProxy got it: a pool's spare by its HAProxy name (the subject is the service's)
            assert re.search(rf"set server \S+/s{new.slot} state drain", await drained.first.inner_text())
            await shot(page, shots, "activity")
            await page.select_option("#f-kind", "server-state")
            assert await page.locator('#activity tbody tr:not(.hidden)[data-kind="server-add"]').count() == 0
            await shot(page, shots, "activity-filtered")

            # the charts draw from live data: the backend's request line has points, and they move
            await page.goto(f"{hp.url}/ui/stats")
            chart = 'section.chart-card[data-proxy="shop"] .chart[data-metric="req"]'
            await page.wait_for_function(
                f"""() => {{ const c = document.querySelector('{chart}');
                        return c && Number(c.dataset.points) >= 3 && Number(c.dataset.last) > 0; }}""", timeout=15_000)
            first = await page.get_attribute(chart, "data-points")
            await page.wait_for_function(
                f"() => document.querySelector('{chart}').dataset.points !== {first!r}", timeout=10_000)
            lines = (await page.get_attribute(chart, "data-series") or "").split("|")
            assert {"shop-a", "shop-b"} & set(lines)  # per-instance lines, named by instance, not by slot
            assert not any(x.startswith("s") and x[1:].isdigit() for x in lines)
            await shot(page, shots, "stats")
        await page.close()


async def test_read_token_sees_but_cannot_act(tmp_path: Path, http_backends: MakeHttpBackend,
                                              chromium_bin: str) -> None:
    shots = artifacts_dir(tmp_path)
    async with running_haplane(tmp_path) as hp, browser(chromium_bin) as b:
        await hp.rig.reg.put_service(Service("blog", "host", "blog.test"))
        b1 = http_backends("blog-1")
        await hp.rig.reg.put_instance(Instance("blog-a", "blog", b1.host, b1.port))
        await hp.rig.until_status("blog.test", 200)
        page = await b.new_page()
        await page.goto(f"{hp.url}/ui/")
        await page.wait_for_url(f"{hp.url}/ui/login")  # no session: asked for a token
        await page.fill("#token", "not-a-token-at-all")
        await page.click('button[type="submit"]')
        assert "not known" in await page.inner_text(".error")
        await page.fill("#token", READ)
        await page.click('button[type="submit"]')
        await page.wait_for_selector('tr[data-instance="blog-a"]')
        assert await page.locator('button[data-action="drain"]').count() == 0
        await shot(page, shots, "overview-read-only")
        # the session cookie is HttpOnly and SameSite=Strict; a change without the CSRF header is refused
        cookie = next(c for c in await page.context.cookies() if c["name"] == "haplane_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        status = await page.evaluate("""async () => (await fetch('/ui/api/instances/blog/blog-a/state', {method: 'POST',
            headers: {'Content-Type': 'application/json'}, body: JSON.stringify({state: 'drain'})})).status""")
        assert status == 403
        assert (await hp.rig.reg.get_instance("blog", "blog-a"))[0].state == "ready"


async def test_weight_and_version_flip_from_the_ui(tmp_path: Path, http_backends: MakeHttpBackend,
                                                   chromium_bin: str) -> None:
    """A weight set in the UI reaches HAProxy; a dynamic backend flipped to another version routes to it."""
    from tests.integration.agent.conftest import free_port

    from haplane.model.records import BackendSpec, FrontendSpec

    shots = artifacts_dir(tmp_path)
    async with running_haplane(tmp_path) as hp, browser(chromium_bin) as b:
        reg = hp.rig.reg
        await reg.put_service(Service("app", "host", "app.test"))
        v1, v2 = http_backends("app-v1"), http_backends("app-v2")
        await reg.put_instance(Instance("app-v1", "app", v1.host, v1.port, version="1.0"))
        await reg.put_instance(Instance("app-v2", "app", v2.host, v2.port, version="2.0"))
        await reg.put_backend(BackendSpec("live", "dynamic", service="app", version="1.0"))
        pub = free_port()
        await reg.put_frontend(FrontendSpec("pub", (("127.0.0.1", pub),), backend="live"))
        await hp.rig.settled()
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await client.get(f"http://127.0.0.1:{pub}/")).text == "backend=app-v1"

            page = await b.new_page(viewport={"width": 1400, "height": 900})
            await login(page, hp, WRITE)
            row = 'section[data-backend="app"] tr[data-instance="app-v1"]'
            await page.wait_for_selector(row)
            await page.fill(f"{row} input[data-weight]", "3")
            await page.click(f'{row} button[data-action="weight"]')
            await page.wait_for_function(
                f"""() => document.querySelector('{row} td.weight')?.textContent === '3'""", timeout=10_000)
            assert (await reg.get_instance("app", "app-v1"))[0].weight == 3

            await page.fill('input[data-version="live"]', "2.0")
            await page.click('button[data-action="version"]')
            await page.wait_for_selector('section[data-backend="live"] tr[data-instance="app-v2"]', timeout=10_000)
            assert await page.locator('section[data-backend="live"] tr[data-instance="app-v1"]').count() == 0
            spec = (await reg.snapshot()).backends[0]
            assert (spec.name, spec.version) == ("live", "2.0")
            for _ in range(100):
                if (await client.get(f"http://127.0.0.1:{pub}/")).text == "backend=app-v2":
                    break
                await asyncio.sleep(0.05)
            answers = {(await client.get(f"http://127.0.0.1:{pub}/")).text for _ in range(10)}
            assert answers == {"backend=app-v2"}
            await shot(page, shots, "overview-version-flip")
