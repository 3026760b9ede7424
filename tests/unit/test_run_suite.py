"""tests/run_suite.py: what runs beside the cluster phase, in which order and at which priority,
and when the cluster's later tests may start."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import run_suite  # noqa: E402  pylint: disable=wrong-import-position

WHOLE_RUN = ["setup", "lint", "sanity", "unit", "integration", "molecule"]


def test_setup_goes_first_at_normal_priority_and_the_rest_at_the_lowest():
    jobs = run_suite.beside_jobs(run_suite.Tally(), WHOLE_RUN)
    assert [job.phase for job in jobs][:5] == ["setup", "lint", "lint", "sanity", "unit"]
    assert {job.phase for job in jobs[5:]} == {"integration", "molecule"}
    assert jobs[0].cmd == run_suite.SETUP_COMMAND[1]
    for job in jobs[1:]:
        assert job.cmd[:3] == ["nice", "-n", str(run_suite.BESIDE_NICENESS)], job.name
    assert run_suite.BESIDE_NICENESS == 19


def test_the_platform_tests_are_not_beside_the_cluster_phase():
    [integration] = [job for job in run_suite.beside_jobs(run_suite.Tally(), WHOLE_RUN) if job.phase == "integration"]
    assert run_suite.PLATFORM_TESTS not in integration.cmd
    assert any(arg.startswith("tests/integration/test_") for arg in integration.cmd)


def test_the_tests_that_need_setup_come_after_the_others():
    first, later = set(run_suite.CLUSTER_TESTS), set(run_suite.CLUSTER_TESTS_AFTER_SETUP)
    assert not first & later
    assert {"tests/cluster/test_chatbot.py", "tests/cluster/test_placement.py", "tests/cluster/test_preseed.py"} == later
    on_disk = {str(p.relative_to(run_suite.TOP)) for p in (run_suite.TOP / "tests" / "cluster").glob("test_*.py")}
    assert first | later | {run_suite.LIFECYCLE_TESTS} == on_disk


def test_without_a_setup_job_the_later_tests_do_not_wait(monkeypatch):
    monkeypatch.setattr(run_suite, "needs_venv", lambda tally, name: True)
    beside = run_suite.Beside(run_suite.Tally(), [])
    assert beside.setup_done.wait(timeout=10)
    beside.finish(run_suite.Tally())
    assert not beside.setup_failed()


def test_a_failed_setup_is_reported_and_releases_the_wait(monkeypatch, tmp_path):
    monkeypatch.setattr(run_suite, "needs_venv", lambda tally, name: True)
    monkeypatch.setattr(run_suite, "OUTPUT", tmp_path)
    monkeypatch.setattr(run_suite, "SETUP_COMMAND", ("setup/false", ["false"]))
    tally = run_suite.Tally()
    beside = run_suite.Beside(tally, ["setup"])
    assert beside.setup_done.wait(timeout=30)
    beside.finish(tally)
    assert beside.setup_failed()
    assert tally.failures == ["setup/false"]
