"""Crash safety, tested the blunt way: start an ingest or a dbt build in a process of its
own, SIGKILL it at a random point (seeded: a moment, or right after one of its commits),
run it again to the end, and check the lake
(medlake.verify) against a clean run over the same files: every table loads at its
latest version with every file it references, no key is stored twice, no row is lost or
added, and the bad files are quarantined exactly as the clean run quarantined them.

The ingest is what the bronze assets run (each modality's landing folder, one after the
other); the dbt build is the command the dbt assets run (`dbt build` in dbt_project). A
"concurrent" trial kills one of four ingests of the same files running at once (the
other three run to their end) and reruns it.
Every trial has a home of its own; the landing zone is shared, so file URIs (keys of the
ingest log and the quarantine) are the same in every trial.

    python -m medlake.chaos ingest --landing DIR [--batch ID] [--chunk-files N]

is the ingest a trial starts (and kills). bench/chaos.py runs 20 trials;
tests/test_chaos.py runs three.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from medlake import verify

ROOT = Path(__file__).resolve().parents[1]
CONCURRENT = 4  # writers in a "concurrent" trial, one of them killed


@dataclass
class Trial:
    number: int
    target: str  # "ingest", "concurrent" (one of several ingests killed) or "dbt"
    writers: int  # MEDLAKE_BRONZE_WRITERS of the ingest
    mode: str  # "time": killed after a random delay; "commit": right after a random commit
    delay_s: float  # when SIGKILL was sent, after the start
    killed: bool  # the process was still running then (else it had finished)
    commits_at_kill: int  # commits the trial's killed run had made by then
    commits_clean: int  # commits the clean run made
    rerun_s: float
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems

    def line(self) -> str:
        state = "clean" if self.clean else "NOT CLEAN: " + "; ".join(self.problems[:3])
        how = "at a random moment" if self.mode == "time" else "after a random commit"
        when = (f"killed {how} ({self.delay_s:5.2f} s, {self.commits_at_kill}/"
                f"{self.commits_clean} commits)" if self.killed else f"finished before the kill ({how})")
        return (f"trial {self.number:2d} {self.target:6s} writers={self.writers}  {when}; "
                f"rerun {self.rerun_s:5.2f} s: {state}")


def environment(home: Path, writers: int = 1) -> dict[str, str]:
    env = dict(os.environ)
    env.update(MEDLAKE_HOME=str(home), MEDLAKE_LAKE_URI=str(home / "lake"),
               DAGSTER_HOME=str(home / "dagster_home"), MEDLAKE_BRONZE_WRITERS=str(writers),
               GX_ANALYTICS_ENABLED="False", PYTHONPATH=str(ROOT))
    return env


def ingest_command(landing: Path, chunk_files: int | None = None, batch: str = "chaos") -> list[str]:
    cmd = [sys.executable, "-m", "medlake.chaos", "ingest", "--landing", str(landing), "--batch", batch]
    return cmd + (["--chunk-files", str(chunk_files)] if chunk_files else [])


def dbt_command(home: Path, select: list[str] | None = None) -> list[str]:
    """`dbt build` as the dbt assets run it, its artifacts and logs in `home`."""
    from orchestration.resources import DBT_DIR, dbt_executable

    cmd = [dbt_executable(), "build", "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
           "--target-path", str(home / "dbt_target"), "--log-path", str(home / "dbt_logs")]
    # cautious: no test of a model left out (relationships to models not selected)
    return cmd + (["--select", *select, "--indirect-selection", "cautious"] if select else [])


def run(cmd: list[str], env: dict, timeout_s: float = 900) -> float:
    """Run `cmd` to the end; its seconds. A failure raises with the end of its output."""
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd[:3])} exited {out.returncode}:\n"
                           f"{(out.stdout + out.stderr)[-3000:]}")
    return time.perf_counter() - start


def run_watched(cmd: list[str], env: dict, home: Path, timeout_s: float = 900) -> tuple[float, float, float]:
    """Run `cmd` to the end, watching `home`'s lake: its seconds, and when its first and
    its last commit appeared (the window a kill can hurt in; before it the run is still
    starting up). A failure raises with the end of its output."""
    before = commits(home)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    first = last = None
    seen = before
    while proc.poll() is None:
        now = commits(home)
        if now != seen:
            at = time.perf_counter() - start
            first, last, seen = first or at, at, now
        if time.perf_counter() - start > timeout_s:
            proc.kill()
        time.sleep(0.02)
    output = proc.stdout.read()
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:3])} exited {proc.returncode}:\n{output[-3000:]}")
    return seconds, first or 0.0, last or seconds


def run_and_kill(cmd: list[str], env: dict, delay_s: float, home: Path | None = None,
                 after_commits: int | None = None) -> bool:
    """Start `cmd` and SIGKILL it, with any process it started, `delay_s` later, or, given
    `after_commits`, as soon as `home`'s lake holds that many more commits (within ~10 ms;
    `delay_s` then bounds the wait); whether it was still running then."""
    base = commits(home) if after_commits else 0
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        if not after_commits:
            proc.wait(timeout=delay_s)
            return False
        deadline = time.perf_counter() + delay_s
        while proc.poll() is None and time.perf_counter() < deadline:
            if commits(home) - base >= after_commits:
                return True
            time.sleep(0.01)
        return proc.poll() is None
    except subprocess.TimeoutExpired:
        return True
    finally:  # also when this process is interrupted: never leave the run behind
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: nothing else is in the group
        proc.wait()


def commits(home: Path) -> int:
    """Delta commits in a home's lake, every table's together (`_delta_log/*.json`)."""
    lake = home / "lake"
    return sum(1 for _ in lake.glob("*/*/_delta_log/*.json")) if lake.is_dir() else 0


class Chaos:
    """Trials against one clean reference. `prepare` generates the landing zone and makes
    the reference (its times set the range of kill moments); `trial` runs one.

    `dbt_select`: the models a dbt build builds (all when None; the tests take a few)."""

    def __init__(self, workdir: Path, patients: int = 12, seed: int = 0, chunk_files: int = 4,
                 dbt_select: list[str] | None = None):
        self.workdir, self.patients, self.seed = Path(workdir), patients, seed
        self.chunk_files, self.dbt_select = chunk_files, dbt_select
        self.landing = self.workdir / "landing"
        self.reference = self.workdir / "reference"
        self.times: dict[str, float] = {}
        self.windows: dict[str, tuple[float, float]] = {}  # first and last commit, in s
        self.commits: dict[str, int] = {}
        self.snapshots: dict[str, dict] = {}

    def prepare(self) -> None:
        from medlake.generate import generate

        generate(self.landing, patients=self.patients, seed=self.seed, bad_files=True)
        env = environment(self.reference)
        for target, cmd in [("ingest", ingest_command(self.landing, self.chunk_files)),
                            ("dbt", dbt_command(self.reference, self.dbt_select))]:
            before = commits(self.reference)
            self.times[target], *window = run_watched(cmd, env, self.reference)
            self.windows[target] = tuple(window)
            self.commits[target] = commits(self.reference) - before
        with _home(self.reference):
            self.snapshots["bronze"] = verify.snapshot(("bronze",))
            self.snapshots["all"] = verify.snapshot()
            problems = verify.check()
        if problems:
            raise RuntimeError(f"the clean reference run is not whole: {problems}")

    def trial(self, number: int, target: str, writers: int = 1) -> Trial:
        """Kill `target` ("ingest": into an empty lake; "concurrent": the same, while
        three more ingests run; "dbt": over the reference's bronze, in a new warehouse)
        at a random point (seeded), rerun it to the end, and check the lake."""
        rng = random.Random(f"{self.seed}:{number}")
        home = self.workdir / f"trial-{number:02d}"
        shutil.rmtree(home, ignore_errors=True)
        others: list[subprocess.Popen] = []
        if target in ("ingest", "concurrent"):
            cmd, layers = ingest_command(self.landing, self.chunk_files), ("bronze",)
            reference, before = self.snapshots["bronze"], 0
        elif target == "dbt":
            shutil.copytree(self.reference / "lake" / "bronze", home / "lake" / "bronze")
            cmd, layers = dbt_command(home, self.dbt_select), ("bronze", "silver", "gold")
            reference, before = self.snapshots["all"], commits(home)
        else:
            raise ValueError(f"unknown target {target!r}: ingest, concurrent or dbt")
        env = environment(home, writers)
        if target == "concurrent":
            # Three more writers ingest the same landing zone meanwhile (every file and
            # key contended), run to their end; the killed one is among four.
            others = [subprocess.Popen(ingest_command(self.landing, self.chunk_files, f"other-{i}"),
                                       env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE, text=True)
                      for i in range(CONCURRENT - 1)]
        # Half the kills come at a moment from a little before the clean run's first
        # commit to its last (earlier, the process is still importing; later, it only
        # reports), catching writes half-done; half right after a commit, catching the
        # run between the commits of one piece of work (its rows, then its log).
        basis = "ingest" if target == "concurrent" else target  # the clean run's figures
        first, last = self.windows[basis]
        mode = rng.choice(["time", "commit"])
        if mode == "time":
            delay, after = rng.uniform(0.8 * first, last), None
        else:  # on commits by any writer
            delay, after = 3 * self.times[basis], rng.randint(1, max(1, self.commits[basis] - 1))
        start = time.perf_counter()
        try:
            killed = run_and_kill(cmd, env, delay, home, after)
            delay = time.perf_counter() - start if killed else delay
            at_kill = commits(home) - before
        finally:
            failed = [_finish(p) for p in others]
        if any(failed):
            raise RuntimeError(f"a concurrent writer failed: {[f for f in failed if f][0]}")
        rerun_s = run(cmd, env)
        with _home(home):
            problems = verify.check(layers, reference)
        shutil.rmtree(home, ignore_errors=True)
        return Trial(number, target, writers, mode, delay, killed, at_kill,
                     self.commits[basis], rerun_s, problems)


def _finish(proc: subprocess.Popen, timeout_s: float = 900) -> str:
    """Wait for a writer that is not killed; the end of its error output if it failed."""
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return f"exit {proc.returncode}: {err[-2000:]}" if proc.returncode else ""


class _home:
    """Point this process's settings at `home` for a while (verify reads through them)."""

    def __init__(self, home: Path):
        self.env = environment(home)

    def __enter__(self):
        self.saved = {k: os.environ.get(k) for k in ("MEDLAKE_HOME", "MEDLAKE_LAKE_URI")}
        os.environ.update({k: self.env[k] for k in self.saved})

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def schedule(trials: int) -> list[tuple[str, int]]:
    """Which run each trial kills, and with how many bronze writers configured, in turn:
    an ingest with one writer (appends), a dbt build, one of four concurrent ingests
    (MERGEs only), and a lone ingest with four writers configured (MERGEs only)."""
    cycle = [("ingest", 1), ("dbt", 1), ("concurrent", CONCURRENT), ("ingest", CONCURRENT)]
    return [cycle[i % len(cycle)] for i in range(trials)]


def summary(trials: list[Trial]) -> str:
    clean = sum(t.clean for t in trials)
    killed = [t for t in trials if t.killed]
    mid = sum(1 for t in killed if 0 < t.commits_at_kill < t.commits_clean)
    return (f"{clean} of {len(trials)} clean ({len(killed)} killed while running, {mid} of them "
            f"after some of the run's commits and before others)")


def _ingest_main(args) -> int:
    from medlake import parallel
    from medlake.ingest import ingest

    out = []
    for name in parallel.MODALITIES:
        s = ingest(parallel.modality(name), Path(args.landing) / name, args.batch,
                   chunk_files=args.chunk_files)
        out.append(asdict(s))
    print(json.dumps(out))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medlake.chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    i = sub.add_parser("ingest", help="ingest every modality's landing folder (what a trial kills)")
    i.add_argument("--landing", required=True)
    i.add_argument("--batch", default="chaos")
    i.add_argument("--chunk-files", type=int, default=None)
    i.set_defaults(fn=_ingest_main)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
