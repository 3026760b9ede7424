"""Run the llamacpp.cluster test suite phase by phase and print one verdict.

The suite starts where a new user starts: the ``demo`` phase runs the README's ``make demo``
as written, in a plain environment, and checks the answer it prints. Nothing runs before it
that the demo could lean on. The ``cluster`` phase then tests that same cluster instead of
deploying a second one. Phases, in order:

  demo         make demo (venv, platform, fixtures, the local containers, site.yml)
  setup        make platform-tests fixtures big-model git-fixture: what only the tests need
               (arm64 image, the large generated model, the source as a git repository, ...)
  lint         yamllint, ansible-lint (production profile, offline)
  sanity       ansible-test sanity, offline
  unit         pytest tests/unit
  integration  pytest tests/integration (real binaries on the host, moto, loopback HTTP)
  cluster      pytest tests/cluster on the demo's cluster, then the lifecycle walk-through
  molecule     every scenario under molecule/ (MOLECULE_SCENARIOS="a b" for some)
  cleanup      make demo-clean

With the cluster and molecule phases both asked for (a whole run), setup, lint, sanity, unit,
the integration tests (but the platform's) and molecule run one after the other beside the
cluster phase, their output in tests/output/suite/, and count when it is done. The cluster
phase is the critical path: its first tests need nothing setup makes and start at once, the
rest wait for setup; the checks after setup run at the lowest CPU priority (nice 19) and the
cluster's containers get more CPU shares than theirs. The platform's integration tests, which
run scripts/platform.sh, run last, alone.

Each check's result and each phase's time are printed, then the total; the last line is
``N passed, N failed``. The exit status is non-zero when anything failed or nothing ran.
Only the standard library is used here: the venv is made by the demo, not before it.

Usage: python3 tests/run_suite.py [PHASE ...]      (default: every phase, in order)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
VENV_BIN = TOP / ".venv" / "bin"
sys.path.insert(0, str(TOP / "scripts"))
import fixtures  # noqa: E402  pylint: disable=wrong-import-position
import big_model  # noqa: E402  pylint: disable=wrong-import-position
import suite_checks  # noqa: E402  pylint: disable=wrong-import-position

PHASES = ("demo", "setup", "lint", "sanity", "unit", "integration", "cluster", "molecule", "cleanup")
# The lifecycle walk-through changes the demo's cluster (threads, workers, builds): it runs
# last in the cluster phase, stops at its first failed step, and cleanup removes the cluster.
# test_build_on_demo counts the compiles after the AWX "Deploy cluster" job's re-run.
# test_chatbot.py leaves HTTPS on, which test_placement.py's first deploy replaces (and
# test_preseed.py's last puts the demo's settings back): they run in this order, last.
# The first ones need nothing the setup phase makes; test_chatbot.py needs its browser, the
# placement and pre-seeding tests its large model (CLUSTER_TESTS_AFTER_SETUP).
CLUSTER_TESTS = ("tests/cluster/test_generate_modes.py", "tests/cluster/test_awx_jobs.py",
                 "tests/cluster/test_build_on_demo.py", "tests/cluster/test_limit.py", "tests/cluster/test_benchmark_smoke.py")
CLUSTER_TESTS_AFTER_SETUP = ("tests/cluster/test_chatbot.py", "tests/cluster/test_placement.py",
                             "tests/cluster/test_preseed.py")
LIFECYCLE_TESTS = "tests/cluster/test_reconfigure.py"
INTEGRATION_TESTS = "tests/integration"
# They run scripts/platform.sh, which may reconfigure podman: never beside the cluster phase.
PLATFORM_TESTS = "tests/integration/test_platform.py"
# Beside the cluster phase: the checks after setup run at this niceness, and the cluster's
# containers weigh this many CPU shares against the others' 1024 (tests/cluster/demo_nodes.py).
BESIDE_NICENESS = 19
CLUSTER_CPU_SHARES = 8192
OUTPUT = TOP / "tests" / "output" / "suite"
# The README's first set-up command, run as written (tests/unit/test_suite_checks.py holds
# the two to each other).
DEMO_COMMAND = ("make", "demo")


class Tally:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.failures: list[str] = []
        self.timings: list[tuple[str, float]] = []

    def record(self, name: str, ok: bool, seconds: float) -> None:
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            self.failures.append(name)
        print(f"[{'PASS' if ok else 'FAIL'}] {name} ({seconds:.1f} s)", flush=True)


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_COLLECTIONS_PATH"] = str(TOP / "collections")
    env.setdefault("LLAMACPP_CLUSTER_CACHE", str(fixtures.cache_dir()))
    env.setdefault("LLAMACPP_FIXTURE_SOURCE", str(fixtures.source_archive_path()))
    env.setdefault("LLAMACPP_FIXTURE_MODEL", str(fixtures.model_path()))
    env.setdefault("LLAMACPP_FIXTURE_BIG_MODEL", str(big_model.big_model_path()))
    env.setdefault("LLAMACPP_FIXTURE_GIT_REPO", str(fixtures.git_repo_path()))
    env.setdefault("LLAMACPP_FIXTURE_GIT_COMMIT", fixtures.git_commit(fixtures.git_repo_path()))
    env.setdefault("ANSIBLE_FORCE_COLOR", "0")
    # Molecule writes an ansible.cfg of its own: the collection must not need injected facts there either.
    env["ANSIBLE_INJECT_FACT_VARS"] = "false"
    env.setdefault("PY_COLORS", "0")
    return env


def run(cmd: list[str], env: dict[str, str] | None = None, log: Path | None = None,
        echo: bool = True) -> tuple[bool, float]:
    """Run cmd from the top of the checkout; with log, tee its output into that file (or,
    without echo, only write it there)."""
    if echo:
        print(f"$ {' '.join(cmd)}", flush=True)
    start = time.monotonic()
    env = environment() if env is None else env
    if log is None:
        rc = subprocess.call(cmd, cwd=TOP, env=env, stdin=subprocess.DEVNULL)
    else:
        log.parent.mkdir(parents=True, exist_ok=True)
        with subprocess.Popen(cmd, cwd=TOP, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) as proc, log.open("w") as out:
            for line in proc.stdout:
                if echo:
                    sys.stdout.write(line)
                out.write(line)
            rc = proc.wait()
    return rc == 0, time.monotonic() - start


def needs_venv(tally: Tally, name: str) -> bool:
    if (VENV_BIN / "python").exists():
        return True
    tally.record(f"{name} (no .venv: 'make venv' failed or did not run)", False, 0.0)
    return False


def phase_demo(tally: Tally) -> None:
    """The README's first command as a user types it: no variable of this suite is set."""
    removed = suite_checks.remove_demo_leftovers()
    if removed:
        print(f"removed the containers of an earlier demo: {' '.join(removed)}", flush=True)
    log = OUTPUT / "demo.log"
    ok, seconds = run(list(DEMO_COMMAND), env=dict(os.environ), log=log)
    tally.record(f"demo/{' '.join(DEMO_COMMAND)}", ok, seconds)
    problems = suite_checks.demo_answer_problems(log.read_text())
    for problem in problems:
        print(f"demo: {problem}", flush=True)
    tally.record("demo/the printed answer", not problems, 0.0)


# Two jobs: the arm64 image (debootstrap under qemu) and the large model (written by this
# host's Python) do not wait for each other.
SETUP_COMMAND = ("setup/make platform-tests fixtures big-model git-fixture",
                 ["make", "-j2", "--no-print-directory", "platform-tests", "fixtures", "big-model", "git-fixture"])


def phase_setup(tally: Tally) -> None:
    ok, seconds = run(SETUP_COMMAND[1])
    tally.record(SETUP_COMMAND[0], ok, seconds)


LINT_COMMANDS = (("lint/yamllint", ["yamllint", "--strict", "."]),
                 ("lint/ansible-lint", ["ansible-lint", "--offline", "--profile", "production"]))
SANITY_COMMAND = ("sanity/ansible-test", ["bash", "scripts/sanity.sh"])


def phase_lint(tally: Tally) -> None:
    if not needs_venv(tally, "lint"):
        return
    for name, cmd in LINT_COMMANDS:
        ok, seconds = run(cmd)
        tally.record(name, ok, seconds)


def phase_sanity(tally: Tally) -> None:
    if needs_venv(tally, "sanity"):
        ok, seconds = run(SANITY_COMMAND[1])
        tally.record(SANITY_COMMAND[0], ok, seconds)


def pytest_command(paths: list[str], report: Path, *options: str) -> list[str]:
    return [str(VENV_BIN / "python"), "-m", "pytest", *paths, "-q", "-p", "no:cacheprovider", "--durations=10",
            *options, f"--junitxml={report}"]


def count_cases(tally: Tally, name: str, report: Path, ok: bool, seconds: float) -> None:
    """Each test case of a pytest run counts on its own; a failed run without a failed case
    (collection error, crash, no test) counts as one failure of its own."""
    if not report.is_file():
        tally.record(f"{name}/pytest (no report: pytest did not run)", False, seconds)
        return
    failed_cases = 0
    for case in ET.parse(report).getroot().iter("testcase"):
        case_name = f"{name}/{case.get('classname')}::{case.get('name')}"
        if case.find("skipped") is not None:
            tally.skipped += 1
        elif case.find("failure") is not None or case.find("error") is not None:
            tally.failed += 1
            tally.failures.append(case_name)
            failed_cases += 1
        else:
            tally.passed += 1
    if not ok and not failed_cases:
        tally.record(f"{name}/pytest exit status", False, seconds)


def pytest_run(tally: Tally, name: str, paths: list[str], *options: str, env: dict[str, str] | None = None) -> None:
    if not needs_venv(tally, name):
        return
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        ok, seconds = run(pytest_command(paths, report, *options), env=env)
        count_cases(tally, name, report, ok, seconds)


def phase_unit(tally: Tally) -> None:
    pytest_run(tally, "unit", ["tests/unit"])


def phase_integration(tally: Tally, platform_only: bool = False) -> None:
    """In a whole run the others run beside the cluster phase, and only the platform's here."""
    if platform_only:
        pytest_run(tally, "integration", [PLATFORM_TESTS])
    else:
        pytest_run(tally, "integration", [INTEGRATION_TESTS])


def phase_cluster(tally: Tally, beside: Beside | None = None) -> None:
    """With checks beside it, the first tests start at once, the rest when setup is done."""
    env = environment()
    if beside is not None:
        env["LLAMACPP_SUITE_CLUSTER_CPU_SHARES"] = str(CLUSTER_CPU_SHARES)
    pytest_run(tally, "cluster", list(CLUSTER_TESTS), "-s", env=env)
    if beside is not None:
        beside.setup_done.wait()
    if beside is not None and beside.setup_failed():
        tally.record("cluster/the tests after setup (not run: setup failed, see its log)", False, 0.0)
    else:
        pytest_run(tally, "cluster", list(CLUSTER_TESTS_AFTER_SETUP), "-s", env=env)
    pytest_run(tally, "cluster", [LIFECYCLE_TESTS], "-s", "-x", env=env)


def molecule_scenarios(tally: Tally) -> list[str]:
    """The scenarios to run: MOLECULE_SCENARIOS, else every one under molecule/."""
    wanted = os.environ.get("MOLECULE_SCENARIOS", "").split()
    scenarios = sorted(p.parent.name for p in (TOP / "molecule").glob("*/molecule.yml"))
    for name in set(wanted) - set(scenarios):
        tally.record(f"molecule/{name} (no such scenario)", False, 0.0)
    return [name for name in wanted or scenarios if name in scenarios]


def run_molecule(names: list[str], results: list, echo: bool = True) -> None:
    """molecule test for each scenario, one after the other; appends (name, ok, seconds, log)."""
    for name in names:
        log = OUTPUT / f"molecule-{name}.log"
        ok, seconds = run(["molecule", "test", "-s", name], log=log, echo=echo)
        results.append((name, ok, seconds, log))


def record_molecule(tally: Tally, results: list) -> None:
    for name, ok, seconds, _log in results:
        tally.record(f"molecule/{name}", ok, seconds)


class Job:
    """One check run beside the cluster phase: its output goes to a log, its result counts when
    the cluster phase is done (each test case of a pytest run with a report on its own)."""

    def __init__(self, phase: str, name: str, cmd: list[str], report: Path | None = None,
                 niceness: int = BESIDE_NICENESS) -> None:
        self.phase, self.name, self.report = phase, name, report
        self.cmd = ["nice", "-n", str(niceness), *cmd] if niceness else cmd
        self.log = OUTPUT / f"{name.replace('/', '-')}.log"
        self.result: tuple[bool, float] | None = None

    def run(self) -> None:
        if self.report:
            self.report.unlink(missing_ok=True)
        self.result = run(self.cmd, log=self.log, echo=False)

    def record(self, tally: Tally) -> None:
        if self.result is None:
            tally.record(f"{self.name} (did not run)", False, 0.0)
            return
        ok, seconds = self.result
        lines = self.log.read_text().splitlines() if self.log.is_file() else []
        print(f"--- {self.name} (beside the cluster phase): the last lines of {self.log} ---")
        print("\n".join(lines[-(300 if not ok else 12):]), flush=True)
        if self.report:
            count_cases(tally, self.phase, self.report, ok, seconds)
        else:
            tally.record(self.name, ok, seconds)


def beside_jobs(tally: Tally, phases: list[str]) -> list[Job]:
    """The checks that run beside the cluster phase, in order: setup (at normal priority: the
    cluster's later tests wait for it), lint, sanity and unit (quick, so a broken tree shows
    early in their logs), the integration tests but the platform's, then the molecule scenarios."""
    jobs: list[Job] = []
    if "setup" in phases:
        jobs.append(Job("setup", *SETUP_COMMAND, niceness=0))
    if "lint" in phases:
        jobs += [Job("lint", name, cmd) for name, cmd in LINT_COMMANDS]
    if "sanity" in phases:
        jobs.append(Job("sanity", *SANITY_COMMAND))
    if "unit" in phases:
        report = OUTPUT / "unit-junit.xml"
        jobs.append(Job("unit", "unit", pytest_command(["tests/unit"], report), report))
    if "integration" in phases:
        report = OUTPUT / "integration-junit.xml"
        paths = [str(p.relative_to(TOP)) for p in sorted((TOP / INTEGRATION_TESTS).glob("test_*.py"))
                 if str(p.relative_to(TOP)) != PLATFORM_TESTS]
        jobs.append(Job("integration", "integration", pytest_command(paths, report), report))
    if "molecule" in phases:
        jobs += [Job("molecule", f"molecule/{name}", ["molecule", "test", "-s", name])
                 for name in molecule_scenarios(tally)]
    return jobs


class Beside:
    """Everything that needs neither the demo's cluster nor an idle machine runs beside the
    cluster phase: lint, sanity, the unit tests, the integration tests (but the platform's) and
    the molecule scenarios use the checkout, binaries on the host, loopback ports and containers
    of their own, on networks of their own; the cluster phase waits on Ansible, podman and
    llama.cpp, so the two share the machine's cores instead of queueing. Results count at
    finish()."""

    def __init__(self, tally: Tally, phases: list[str]) -> None:
        self.jobs = beside_jobs(tally, phases) if needs_venv(tally, "beside") else []
        self.setup_done = threading.Event()
        print(f"beside the cluster phase: {', '.join(job.name for job in self.jobs) or '(nothing)'}; "
              f"logs: {OUTPUT}/", flush=True)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        if not any(job.phase == "setup" for job in self.jobs):
            self.setup_done.set()
        try:
            for job in self.jobs:
                job.run()
                if job.phase == "setup":
                    self.setup_done.set()
        finally:
            self.setup_done.set()

    def setup_failed(self) -> bool:
        return any(job.phase == "setup" and not (job.result and job.result[0]) for job in self.jobs)

    def finish(self, tally: Tally) -> None:
        self.thread.join()
        for job in self.jobs:
            job.record(tally)

    def timings(self) -> list[tuple[str, float]]:
        """Seconds per phase of the jobs, in the order they ran."""
        seconds: dict[str, float] = {}
        for job in self.jobs:
            seconds[job.phase] = seconds.get(job.phase, 0.0) + (job.result[1] if job.result else 0.0)
        return list(seconds.items())


def phase_molecule(tally: Tally) -> None:
    if needs_venv(tally, "molecule"):
        results: list = []
        run_molecule(molecule_scenarios(tally), results)
        record_molecule(tally, results)


def phase_cleanup(tally: Tally) -> None:
    if needs_venv(tally, "cleanup"):
        ok, seconds = run(["make", "--no-print-directory", "demo-clean"], env=dict(os.environ))
        tally.record("cleanup/make demo-clean", ok, seconds)


# With the cluster phase and the molecule phase after it, these run beside the cluster phase
# (the integration tests but the platform's, which run alone after it).
BESIDE_PHASES = ("setup", "lint", "sanity", "unit", "integration", "molecule")


def main(argv: list[str]) -> int:
    phases = argv or list(PHASES)
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        print(f"run_suite: unknown phase(s) {', '.join(unknown)}; choose from {', '.join(PHASES)}", file=sys.stderr)
        return 2
    if shutil.which("make") is None:
        print("run_suite: make not found; fix: apt-get install make", file=sys.stderr)
        return 2
    tally = Tally()
    start = time.monotonic()
    deferring = {"cluster", "molecule"} <= set(phases)
    deferred = [p for p in phases if p in BESIDE_PHASES] if deferring else []
    beside = None
    for phase in phases:
        print(f"\n=== phase {phase} ===", flush=True)
        phase_start = time.monotonic()
        if phase in deferred:
            print(f"({'ran' if beside else 'runs'} beside the cluster phase; logs in {OUTPUT}/)", flush=True)
        elif phase == "cluster" and deferring:
            beside = Beside(tally, deferred)
            phase_cluster(tally, beside)
            tally.timings.append((phase, time.monotonic() - phase_start))
            beside.finish(tally)
            print(f"(waited {time.monotonic() - phase_start - tally.timings[-1][1]:.1f} s for the checks beside it)")
            tally.timings += beside.timings()
            if "integration" in deferred:
                print("\n=== the platform's integration tests, alone ===", flush=True)
                platform_start = time.monotonic()
                phase_integration(tally, platform_only=True)
                tally.timings.append(("integration (platform)", time.monotonic() - platform_start))
        else:
            globals()[f"phase_{phase}"](tally)
            tally.timings.append((phase, time.monotonic() - phase_start))
    total = time.monotonic() - start
    print("\n=== summary ===")
    for phase, seconds in tally.timings:
        note = " (beside cluster)" if beside is not None and phase in deferred else ""
        print(f"phase {phase:<12} {seconds:8.1f} s{note}")
    print(f"total {'':<12} {total:8.1f} s ({total / 60:.1f} min)")
    for name in tally.failures:
        print(f"failed: {name}")
    skipped = f", {tally.skipped} skipped" if tally.skipped else ""
    print(f"{tally.passed} passed, {tally.failed} failed{skipped}")
    return 0 if tally.failed == 0 and tally.passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
