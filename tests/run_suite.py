"""Run the llamacpp.cluster test suite phase by phase and print one verdict.

Phases: lint (yamllint, ansible-lint), sanity (ansible-test sanity, offline), unit and
integration (pytest), molecule (every scenario under molecule/). Each check's result and
each phase's time are printed; the last line is ``N passed, N failed``. The exit status is
non-zero when anything failed or nothing ran.

Usage: python tests/run_suite.py [PHASE ...]      (default: every phase, in order)
Environment: MOLECULE_SCENARIOS="a b" runs only those scenarios.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
VENV_BIN = TOP / ".venv" / "bin"
sys.path.insert(0, str(TOP / "scripts"))
import fixtures  # noqa: E402  pylint: disable=wrong-import-position
PHASES = ("lint", "sanity", "unit", "integration", "molecule")


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
    env.setdefault("ANSIBLE_FORCE_COLOR", "0")
    env.setdefault("PY_COLORS", "0")
    return env


def run(cmd: list[str]) -> tuple[bool, float]:
    print(f"$ {' '.join(cmd)}", flush=True)
    start = time.monotonic()
    rc = subprocess.call(cmd, cwd=TOP, env=environment(), stdin=subprocess.DEVNULL)
    return rc == 0, time.monotonic() - start


def phase_lint(tally: Tally) -> None:
    for name, cmd in (("lint/yamllint", ["yamllint", "--strict", "."]),
                      ("lint/ansible-lint", ["ansible-lint", "--offline", "--profile", "production"])):
        ok, seconds = run(cmd)
        tally.record(name, ok, seconds)


def phase_sanity(tally: Tally) -> None:
    ok, seconds = run(["bash", "scripts/sanity.sh"])
    tally.record("sanity/ansible-test", ok, seconds)


def pytest_phase(tally: Tally, phase: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        ok, seconds = run([str(VENV_BIN / "python"), "-m", "pytest", f"tests/{phase}", "-q",
                           "-p", "no:cacheprovider", f"--junitxml={report}"])
        if not report.is_file():
            tally.record(f"{phase}/pytest (no report: pytest did not run)", False, seconds)
            return
        for case in ET.parse(report).getroot().iter("testcase"):
            name = f"{phase}/{case.get('classname')}::{case.get('name')}"
            if case.find("skipped") is not None:
                tally.skipped += 1
            elif case.find("failure") is not None or case.find("error") is not None:
                tally.failed += 1
                tally.failures.append(name)
            else:
                tally.passed += 1
        if not ok and not tally.failures:
            tally.record(f"{phase}/pytest exit status", False, seconds)


def phase_unit(tally: Tally) -> None:
    pytest_phase(tally, "unit")


def phase_integration(tally: Tally) -> None:
    pytest_phase(tally, "integration")


def phase_molecule(tally: Tally) -> None:
    # Scenarios mount the host's compiler cache into their builders (see molecule/*/molecule.yml).
    for arch in ("bookworm", "bookworm-arm64"):
        (Path(environment()["LLAMACPP_CLUSTER_CACHE"]) / "ccache" / arch).mkdir(parents=True, exist_ok=True)
    wanted = os.environ.get("MOLECULE_SCENARIOS", "").split()
    scenarios = sorted(p.parent.name for p in (TOP / "molecule").glob("*/molecule.yml"))
    for name in wanted or scenarios:
        if name not in scenarios:
            tally.record(f"molecule/{name} (no such scenario)", False, 0.0)
            continue
        ok, seconds = run(["molecule", "test", "-s", name])
        tally.record(f"molecule/{name}", ok, seconds)


def main(argv: list[str]) -> int:
    phases = argv or list(PHASES)
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        print(f"run_suite: unknown phase(s) {', '.join(unknown)}; choose from {', '.join(PHASES)}", file=sys.stderr)
        return 2
    if not (VENV_BIN / "python").exists():
        print("run_suite: no .venv; run 'make venv' (or 'make test', which sets everything up)", file=sys.stderr)
        return 2
    tally = Tally()
    for phase in phases:
        print(f"\n=== phase {phase} ===", flush=True)
        start = time.monotonic()
        globals()[f"phase_{phase}"](tally)
        tally.timings.append((phase, time.monotonic() - start))
    print("\n=== summary ===")
    for phase, seconds in tally.timings:
        print(f"phase {phase:<12} {seconds:8.1f} s")
    for name in tally.failures:
        print(f"failed: {name}")
    skipped = f", {tally.skipped} skipped" if tally.skipped else ""
    print(f"{tally.passed} passed, {tally.failed} failed{skipped}")
    return 0 if tally.failed == 0 and tally.passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
