"""Traffic families from show stat rows: named by service and instance, free slots and haplane's own stats
listener left out, times in seconds."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from haplane.agent.stats import parse_live
from haplane.traffic import traffic_text

HEADER = ("# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,"
          "weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,"
          "rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,"
          "hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,"
          "lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,rtime_max,ttime_max,uweight,")


def row(px: str, sv: str, kind: int, **v: int) -> str:
    cols = HEADER[2:].rstrip(",").split(",")
    vals = {c: "" for c in cols}
    vals.update(pxname=px, svname=sv, type=str(kind), status="UP")
    vals.update({k: str(n) for k, n in v.items()})
    return ",".join(vals[c] for c in cols) + ","


def test_families_named_never_by_slot() -> None:
    text = "\n".join([
        HEADER,
        row("http", "FRONTEND", 0, req_tot=12, hrsp_2xx=10, hrsp_5xx=2, bin=100, bout=900, scur=1),
        row("stats", "FRONTEND", 0, req_tot=5),
        row("web", "s1", 2, hrsp_2xx=6, stot=6, bout=600, rtime=12, ttime=15, qtime=1, ctime=2, rtime_max=40),
        row("web", "s2", 2, hrsp_2xx=4, stot=4),
        row("web", "s3", 2),  # a free slot
        row("web", "BACKEND", 1, req_tot=10, hrsp_2xx=10, bout=1000, qcur=3, econ=1, wretr=2, wredis=1, rtime=10),
    ]) + "\n"
    rows = parse_live(text)
    names = {("web", "s1"): ("web", "i-1"), ("web", "s2"): ("web", "i-2"), ("web", "s3"): ("web", None)}

    text = traffic_text(rows, names)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(text) for s in fam.samples}
    types = {fam.name: fam.type for fam in text_string_to_metric_families(text)}
    assert types["haplane_service_http_requests"] == "counter" and types["haplane_service_queue_current"] == "gauge"
    # label values are escaped as the format says
    odd = traffic_text(rows, {**names, ("web", "s1"): ("web", 'i"1\\x')})
    assert 'instance="i\\"1\\\\x"' in odd
    assert any(s.labels.get("instance") == 'i"1\\x' for fam in text_string_to_metric_families(odd) for s in fam.samples)
    assert samples[("haplane_frontend_http_responses_total", (("code", "5xx"), ("frontend", "http")))] == 2
    assert not any(dict(k[1]).get("frontend") == "stats" for k in samples)
    svc = (("backend", "web"), ("service", "web"))
    assert samples[("haplane_service_http_requests_total", svc)] == 10
    assert samples[("haplane_service_queue_current", svc)] == 3
    assert samples[("haplane_service_connection_errors_total", svc)] == 1
    assert samples[("haplane_service_retries_total", svc)] == 2
    assert samples[("haplane_service_response_time_average_seconds", svc)] == 0.010
    i1 = (("backend", "web"), ("instance", "i-1"), ("service", "web"))
    assert samples[("haplane_instance_http_responses_total", (*i1[:1], ("code", "2xx"), *i1[1:]))] == 6
    assert samples[("haplane_instance_sent_bytes_total", i1)] == 600
    assert samples[("haplane_instance_response_time_max_seconds", i1)] == 0.040
    instances = {dict(k[1]).get("instance") for k in samples if k[0].startswith("haplane_instance_")}
    assert instances == {"i-1", "i-2"}  # the free slot s3 is not there, and no slot name is


def test_promtool_accepts_the_traffic_text(promtool_bin: str) -> None:
    import subprocess

    text = traffic_text(parse_live("\n".join([HEADER, row("http", "FRONTEND", 0, req_tot=3, hrsp_2xx=3),
                                              row("web", "s1", 2, hrsp_2xx=3), row("web", "BACKEND", 1)]) + "\n"),
                        {("web", "s1"): ("web", "i-1")})
    out = subprocess.run([promtool_bin, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), out.stdout + out.stderr
