"""The sampler's history: an hour kept compactly (fine samples for 5 minutes, 10 s points before), windows that
join both, free slots costing nothing, and the busiest-first order the charts page through."""

from __future__ import annotations

from tests.unit.test_traffic import HEADER, row

from haplane.agent.stats import COARSE_STEP, FINE_KEEP, StatsSampler


def stat(web: int, api: int) -> str:
    return "\n".join([HEADER,
                      row("web", "BACKEND", 1, req_tot=web, hrsp_2xx=web, rtime=4),
                      row("web", "s1", 2, hrsp_2xx=web, stot=web),
                      row("web", "s2", 2),  # a free slot: never a track
                      row("api", "BACKEND", 1, req_tot=api, hrsp_2xx=api),
                      row("http", "FRONTEND", 0, req_tot=web + api, hrsp_2xx=web + api)]) + "\n"


async def test_an_hour_in_two_tiers_and_the_busiest_first() -> None:
    now = [1_000_000.0]
    counts = {"web": 0, "api": 0}

    async def read() -> str:
        return stat(counts["web"], counts["api"])

    sampler = StatsSampler(read, clock=lambda: now[0])
    for _ in range(1200):  # 20 minutes at one sample a second: web 10 req/s, api 1 req/s
        counts["web"] += 10
        counts["api"] += 1
        await sampler.sample()
        now[0] += 1.0
    web = sampler.series[("web", "BACKEND")]
    assert len(web.fine_t) <= 2 * FINE_KEEP and len(web.coarse_t) <= 2 * 360
    assert ("web", "s2") not in sampler.series  # the free slot
    five = sampler.history(300)["web/BACKEND"]
    assert 295 <= len(five) <= 301 and all(abs(p[1] - 10) < 0.01 for p in five)
    fifteen = sampler.history(900)["web/BACKEND"]
    ts = [p[0] for p in fifteen]
    assert ts == sorted(ts) and ts[-1] - ts[0] >= 880  # coarse before the fine samples, no gap, no overlap
    coarse = [p for p in fifteen if p[0] < web.fine_t[0]]  # fine samples are kept 5 to 10 minutes
    bad = [p for p in coarse if not (p[0] % COARSE_STEP == 0 and abs(p[1] - 10) < 0.01)]
    assert coarse and not bad, (bad, five[0])
    assert [(p, k) for p, k, _ in sampler.busiest()] == [("web", "backend"), ("api", "backend"), ("http", "frontend")]
    only_api = sampler.history(300, {"api"})
    assert set(only_api) == {"api/BACKEND"}


async def test_rows_read_before_a_change_are_not_fresh_after_it() -> None:
    """/metrics and the overview accept a sample up to max_age old, but not one read before the agent changed
    HAProxy: after a reload that added a backend, such rows lack it (a flaky HSDO metrics test in CI)."""
    now = [1_000.0]
    reads = [0]

    async def read() -> str:
        reads[0] += 1
        return stat(reads[0], 0)

    sampler = StatsSampler(read, clock=lambda: now[0])
    await sampler.fresh(max_age=10, keep_sampling=False)
    await sampler.fresh(max_age=10, keep_sampling=False)
    assert reads[0] == 1, "a young sample is reused"
    sampler.invalidate()
    rows = await sampler.fresh(max_age=10, keep_sampling=False)
    assert reads[0] == 2 and rows[("web", "s1")].stot == 2, "a change makes the next reader sample again"
    await sampler.fresh(max_age=10, keep_sampling=False)
    assert reads[0] == 2
