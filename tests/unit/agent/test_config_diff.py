"""The reload record's config diff (agent/apply.py): section by section, linear in the config's size."""

from __future__ import annotations

from haplane.agent.apply import config_diff


def config(backends: int, extra: str = "", balance7: str = "roundrobin", maxconn: int = 1) -> str:
    text = f"# made by haplane\nglobal\n    maxconn {maxconn}\n"
    for i in range(backends):
        text += f"backend b{i}\n    balance {balance7 if i == 7 else 'roundrobin'}\n"
        text += "".join(f"    server s{j} 127.0.0.1:1 check disabled\n" for j in range(8))
        if i == backends // 2:
            text += extra
    return text


def test_a_changed_global_a_changed_backend_and_an_added_one_among_3000() -> None:
    """3,000 backends of identical slot lines: difflib over the whole text took 80 s here (its matching goes
    quadratic on so many identical lines); by section it is one pass."""
    old = config(3000)
    new = config(3000, extra="backend fresh\n    balance first\n    server s1 127.0.0.1:1 check disabled\n",
                 balance7="leastconn", maxconn=2)
    diff = config_diff(old, new)
    assert diff.startswith("--- running\n+++ new\n")
    assert "-    maxconn 1\n+    maxconn 2\n" in diff
    assert " backend b7\n-    balance roundrobin\n+    balance leastconn\n" in diff
    assert "@@ backend fresh added @@\n+backend fresh\n+    balance first\n" in diff
    assert diff.count("\n") < 20  # nothing else


def test_removed_sections_no_change_and_the_cut() -> None:
    assert config_diff(config(10), config(10)) == ""
    removed = config_diff(config(10), config(9))
    assert "@@ backend b9 removed @@\n-backend b9\n" in removed
    assert config_diff(None, "global\n    maxconn 1\n").endswith("+global\n+    maxconn 1\n")
    cut = config_diff(config(0), config(5000), limit=1000)
    assert cut.endswith("... (diff cut)\n") and len(cut) < 1200
