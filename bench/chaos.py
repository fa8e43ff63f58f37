"""The chaos run: SIGKILL ingests (alone, or one of four running at once) and dbt builds
at random moments, rerun them, and count the trials whose lake is whole and equal to a
clean run's (medlake/chaos.py says what is checked). Prints one line per trial as it ends, then "N of 20 clean", where the kills
landed and how long the reruns took.

`--control N` first runs N ingest trials of a deliberately broken ingest (no probe for
stored keys, so a rerun appends rows a killed run had already written): the checks must
catch some, or the trials prove nothing.

Run: `make bench` (or `.venv/bin/python bench/chaos.py [--trials 20] [--control 10]`).
"""
from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medlake import chaos  # noqa: E402

BROKEN = ("import sys, medlake.lake as lake; lake._holds_any = lambda *a, **k: False; "
          "from medlake.chaos import main; sys.exit(main(sys.argv[1:]))")


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f} s"


def report(trials: list[chaos.Trial]) -> None:
    print(f"\n{chaos.summary(trials)}")
    for target in ("ingest", "concurrent", "dbt"):
        some = [t for t in trials if t.target == target]
        if not some:
            continue
        killed = [t for t in some if t.killed]
        modes = ", ".join(f"{sum(t.mode == m for t in killed)} {m}" for m in ("time", "commit"))
        print(f"  {target}: {len(some)} trials, {len(killed)} killed while running ({modes}); "
              f"kill moments (min / median / max) {_spread([t.delay_s for t in killed])}; commits "
              f"made by then {sorted(t.commits_at_kill for t in killed)} of {some[0].commits_clean}; "
              f"reruns {_spread([t.rerun_s for t in some])}")


def control(run: chaos.Chaos, trials: int) -> int:
    """Broken-ingest trials (module docstring); how many the checks flagged."""
    plain = chaos.ingest_command
    chaos.ingest_command = lambda *a, **k: [sys.executable, "-c", BROKEN, *plain(*a, **k)[3:]]
    try:
        flagged = 0
        for i in range(trials):
            t = run.trial(100 + i, "ingest", 1)
            flagged += not t.clean
            print(f"control {t.line()}", flush=True)
        return flagged
    finally:
        chaos.ingest_command = plain


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--patients", type=int, default=12)
    p.add_argument("--chunk-files", type=int, default=4, help="files per commit (more commits, more kill points)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dbt-select", nargs="*", default=None, help="dbt models (default: the whole project)")
    p.add_argument("--control", type=int, default=0, help="broken-ingest trials to run first")
    args = p.parse_args()
    # A TERM (an interrupted `make bench`) unwinds like Ctrl-C: the run being tried is
    # killed and the temporary lakes removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="medlake-chaos-") as tmp:
        run = chaos.Chaos(Path(tmp), patients=args.patients, seed=args.seed,
                          chunk_files=args.chunk_files, dbt_select=args.dbt_select)
        start = time.perf_counter()
        print(f"clean reference: {args.patients} patients with bad files ...", flush=True)
        run.prepare()
        for target in ("ingest", "dbt"):
            first, last = run.windows[target]
            print(f"  {target}: {run.times[target]:.2f} s, {run.commits[target]} commits "
                  f"between {first:.2f} and {last:.2f} s", flush=True)
        if args.control:
            flagged = control(run, args.control)
            print(f"control: the checks flagged {flagged} of {args.control} broken-ingest trials\n")
        trials = []
        for i, (target, writers) in enumerate(chaos.schedule(args.trials)):
            trials.append(run.trial(i, target, writers))
            print(trials[-1].line(), flush=True)
        report(trials)
        print(f"  total {time.perf_counter() - start:.0f} s")
        if not all(t.clean for t in trials):
            sys.exit(1)


if __name__ == "__main__":
    main()
