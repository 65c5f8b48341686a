"""Traffic, seen as an operator sees it, in headless Chromium against a real agent and HAProxy with the access log
on: requests sent through HAProxy appear in the charts (uPlot, with a time axis and units), in the overview's
counters (req/s, errors, time) and in the access log; a backend whose only server is down is shown as a warning;
an instance's page shows its history. Screenshots of every page go to tests/screenshots (git-ignored)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx
import pytest
from tests.e2e.test_ui_browser import artifacts_dir, browser, login, shot, traffic
from tests.integration.ui.conftest import WRITE, running_haplane
from tests.support.procs import MakeHttpBackend

from haplane.model.records import Instance, Service

pytestmark = pytest.mark.e2e


async def test_traffic_in_charts_counters_log_and_a_down_backend(tmp_path: Path, http_backends: MakeHttpBackend,
                                                                 chromium_bin: str) -> None:
    shots = artifacts_dir(tmp_path)
    async with running_haplane(tmp_path, access_log="full") as hp, browser(chromium_bin) as b:
        reg = hp.rig.reg
        await reg.put_service(Service("shop", "host", "shop.test"))
        await reg.put_service(Service("lonely", "host", "lonely.test"))
        await hp.rig.settled()
        s1, s2 = http_backends("shop-1"), http_backends("shop-2")
        await reg.put_instance(Instance("shop-a", "shop", s1.host, s1.port, version="1.0"))
        await reg.put_instance(Instance("shop-b", "shop", s2.host, s2.port, version="1.0"))
        lone = http_backends("lonely-1")
        await reg.put_instance(Instance("lonely-a", "lonely", lone.host, lone.port))
        await hp.rig.until_status("shop.test", 200)
        await hp.rig.until_status("lonely.test", 200)
        lone.stop()  # its only server: HAProxy's checks take it down

        page = await b.new_page(viewport={"width": 1400, "height": 1000})
        await page.goto(f"{hp.url}/ui/login")
        await shot(page, shots, "login")
        await login(page, hp, WRITE)

        async with traffic(hp, "shop.test") as sent:
            s2.status = 500  # one instance answers errors: the 5xx figures move too
            # the overview: current traffic on the backend's row, and the down backend in the warning colour
            await page.wait_for_function(
                """() => { const b = document.querySelector('section[data-backend="shop"] .badge.traffic[data-req]');
                           return b && Number(b.dataset.req) > 5; }""", timeout=20_000)
            await page.wait_for_selector('section[data-backend="shop"] .badge.warn[data-err]', timeout=15_000)
            await page.wait_for_selector('section[data-backend="lonely"][data-health="down"]', timeout=20_000)
            colour = await page.eval_on_selector('section[data-backend="lonely"]',
                                                 "e => getComputedStyle(e).borderLeftColor")
            assert colour == "rgb(214, 69, 69)", colour  # --down
            assert "no server up" in await page.inner_text('section[data-backend="lonely"] header')
            time_badge = await page.inner_text('section[data-backend="shop"] .badge.traffic[data-time]')
            assert re.fullmatch(r"p95 [\d.]+ ms", time_badge), time_badge  # the access log's 95th percentile
            await page.wait_for_function(
                """() => { const td = document.querySelector(
                               'section[data-backend="shop"] tr[data-instance="shop-a"] td[data-req]');
                           return td && Number(td.textContent) > 0; }""", timeout=10_000)
            await shot(page, shots, "overview-traffic")
            await page.select_option("#f-state", "problems")
            assert await page.locator("#backends section.backend").count() == 1
            await shot(page, shots, "overview-problems")
            await page.select_option("#f-state", "")

            # the charts: a time axis (uPlot's time scale, ticks written as times), units, a tooltip on hover
            await page.goto(f"{hp.url}/ui/stats")
            chart = 'section.chart-card[data-proxy="shop"] .chart[data-metric="req"]'
            await page.wait_for_function(
                f"""() => {{ const c = document.querySelector('{chart}');
                        return c && Number(c.dataset.points) >= 3 && Number(c.dataset.last) > 0; }}""", timeout=20_000)
            axis = await page.eval_on_selector(chart, """c => ({time: c._u.scales.x.time,
                ticks: c._u.axes[0]._values, unit: c._u.axes[1].label, span: c._u.scales.x.max - c._u.scales.x.min})""")
            assert axis["time"] is True and axis["unit"] == "req/s" and 299 <= axis["span"] <= 301
            assert axis["ticks"] and all(re.search(r"\d{1,2}:\d{2}", t) for t in axis["ticks"]), axis["ticks"]
            first = await page.locator("section.chart-card").first.get_attribute("data-proxy")
            assert first == "shop", "the busiest backend comes first"
            box = await page.locator(f"{chart} .u-over").bounding_box()
            assert box is not None
            await page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)
            tip = await page.inner_text(f"{chart} .u-tooltip")
            assert re.search(r"\d{2}:\d{2}:\d{2}", tip) and "req/s" in tip, tip
            await shot(page, shots, "stats-5min")
            await page.click('#windows button[data-window="3600"]')
            await page.wait_for_function(
                f"() => document.querySelector('{chart}')._u.scales.x.max - document.querySelector('{chart}')"
                "._u.scales.x.min > 3500", timeout=10_000)
            await shot(page, shots, "stats-60min")

            # an instance's page: where it serves, its traffic, and its history of changes
            await page.goto(f"{hp.url}/ui/instance?service=shop&id=shop-a")
            await page.wait_for_selector('#history tr[data-kind="server-add"]', timeout=10_000)
            await page.wait_for_function(
                "() => Number(document.querySelector('#c-req').dataset.points) > 0", timeout=10_000)
            assert await page.locator("#servers tr[data-server]").count() == 1
            await shot(page, shots, "instance")

            # the access log has every request, named
            await asyncio.sleep(0.5)
            answered = sent[0]
        assert answered >= 50
        code, out, err = await hp.cli("logs", "--service", "shop", "--json", "-n", "100000")
        assert code == 0, err
        docs = [json.loads(x) for x in out.splitlines()]
        assert len(docs) >= answered - 5  # what was in flight when the block ended may come after
        # (the 503s of until_status's first tries, before any instance, name no instance)
        assert {d["instance"] for d in docs if d["status"] != 503} == {"shop-a", "shop-b"}
        assert {d["status"] for d in docs} >= {200, 500}
        code, out, _ = await hp.cli("logs", "--status", "5xx", "--instance", "shop-b", "-n", "3")
        assert code == 0 and len(out.splitlines()) == 3 and all(" shop/shop-b 500 " in x for x in out.splitlines())

        # the other pages, for the record
        await page.goto(f"{hp.url}/ui/activity")
        await page.wait_for_selector("#activity tbody tr")
        await shot(page, shots, "activity-traffic")
        await page.goto(f"{hp.url}/ui/certificates")
        await page.wait_for_load_state("networkidle")
        await shot(page, shots, "certificates")
        await page.goto(f"{hp.url}/docs")
        await page.wait_for_selector(".swagger-ui .opblock", timeout=15_000)
        await shot(page, shots, "docs")
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{hp.url}/docs")).status_code == 200
        await page.close()
