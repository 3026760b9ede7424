"""benchmarks/cluster.py and scratch.py: the PLAY RECAP totals and the compile times read
from build logs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "benchmarks"))
from cluster import BenchError, recap  # noqa: E402  pylint: disable=wrong-import-position
from scratch import compile_seconds  # noqa: E402  pylint: disable=wrong-import-position

RECAP = """
TASK [llamacpp.cluster.generate : Ask] *****
ok: [llamacpp-main]

PLAY RECAP *********************************************************************
llamacpp-main              : ok=40   changed=3    unreachable=0    failed=0    skipped=12   rescued=0    ignored=0
llamacpp-worker1           : ok=30   changed=0    unreachable=0    failed=0    skipped=9    rescued=0    ignored=0
llamacpp-worker2           : ok=35   changed=21   unreachable=0    failed=0    skipped=4    rescued=0    ignored=1
localhost                  : ok=4    changed=0    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0
"""


def test_recap_sums_the_counts_and_counts_the_changed_hosts():
    totals = recap(RECAP)
    assert totals["ok"] == 109 and totals["changed"] == 24 and totals["skipped"] == 25 and totals["ignored"] == 1
    assert totals["changed_hosts"] == 2


def test_recap_reads_only_the_last_recap():
    assert recap("ok=99 changed=99\n" + RECAP)["changed"] == 24
    assert recap("no recap here changed=5") == {"changed_hosts": 0}


def test_compile_seconds_pairs_configure_with_done():
    stamps = [("configure", "2026-11-27T00:10:00Z"), ("done", "2026-11-27T00:11:05Z"),
              ("configure", "2026-11-27T23:59:50Z"), ("done", "2026-11-28T00:00:10Z")]
    assert compile_seconds(stamps) == [65.0, 20.0]
    assert not compile_seconds([])


def test_an_unfinished_build_is_an_error():
    with pytest.raises(BenchError, match="did not finish"):
        compile_seconds([("configure", "2026-11-27T00:10:00Z")])
