"""Memory: does a process that serves sign-ins grow? Peak RSS after 10 thousand and after 100
thousand whole sign-ins with the SQLite store.

A child process (``python benchmarks/rss.py --child``, started by :func:`run_rss`) holds one
``Auth`` on a SQLite file and serves whole ``contact_otp`` sign-ins (start, read the code,
advance, validate the new session) on one thread. At each checkpoint it prints its peak RSS so
far (``VmHWM``), its RSS now (``VmRSS``) and ``resource.getrusage(RUSAGE_SELF).ru_maxrss``. A
fresh process, so nothing else the benchmark did is in its RSS; but Linux carries the peak of
the process that forked it into ``ru_maxrss`` across the exec, so ``ru_maxrss`` shows the larger
of the two and ``VmHWM`` is the child's own peak.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass
class Checkpoint:
    signins: int
    peak_kib: int  # VmHWM
    rss_kib: int  # VmRSS
    maxrss_kib: int  # ru_maxrss
    seconds: float


def _status_kib(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def child(db: Path, total: int, checkpoints: list[int]) -> None:
    from signins import open_auth, prepare, round_robin, sign_in

    from portalauth import FrozenClock

    clock = FrozenClock()
    store = f"sqlite:///{db}"
    with open_auth(store, clock) as auth:
        setup = prepare(auth, store, "contact_otp")
        take = round_robin(setup.clients)
        began = time.perf_counter()
        marks = sorted(set(checkpoints) | {total})
        done = 0
        for mark in marks:
            while done < mark:
                auth.sessions.validate(sign_in(auth, clock, setup, take()).token)
                done += 1
            usage = resource.getrusage(resource.RUSAGE_SELF)
            print(
                json.dumps(
                    {
                        "signins": done,
                        "peak_kib": _status_kib("VmHWM"),
                        "rss_kib": _status_kib("VmRSS"),
                        "maxrss_kib": usage.ru_maxrss,
                        "seconds": time.perf_counter() - began,
                    }
                ),
                flush=True,
            )


def run_rss(db: Path, total: int, checkpoints: list[int]) -> list[Checkpoint]:
    """Run the child; its checkpoints."""
    command = [
        sys.executable,
        str(HERE / "rss.py"),
        "--child",
        "--db",
        str(db),
        "--signins",
        str(total),
        "--checkpoints",
        ",".join(str(c) for c in checkpoints),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the RSS child failed: {done.stderr[-2000:]}")
    return [Checkpoint(**json.loads(line)) for line in done.stdout.splitlines() if line.strip()]


def report(points: list[Checkpoint], reference: int) -> list[str]:
    """Markdown lines: each checkpoint against the one at ``reference`` sign-ins."""
    base = next((p for p in points if p.signins == reference), points[0])
    lines = [
        "",
        "### Memory: one process with an `Auth` on SQLite, serving whole sign-ins",
        "",
        "| sign-ins served | peak RSS MiB (VmHWM) | RSS now MiB (VmRSS) | ru_maxrss MiB"
        " | seconds |",
        "|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        lines.append(
            f"| {p.signins:,} | {p.peak_kib / 1024:.1f} | {p.rss_kib / 1024:.1f}"
            f" | {p.maxrss_kib / 1024:.1f} | {p.seconds:.0f} |"
        )
    last = points[-1]
    peak = (last.peak_kib - base.peak_kib) / 1024
    now = (last.rss_kib - base.rss_kib) / 1024
    served = max(1, last.signins - base.signins)
    growth = max(peak, now)
    verdict = "no growth" if growth <= 2.0 else f"GROWS ({growth * 2**20 / served:.0f} B/sign-in)"
    lines.append(
        f"\nFrom {base.signins:,} to {last.signins:,} sign-ins: peak RSS {peak:+.1f} MiB,"
        f" RSS {now:+.1f} MiB: {verdict} (2 MiB or less counts as none). ru_maxrss includes"
        " the peak of the process that started this one (Linux keeps it across exec)."
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", action="store_true", required=True)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--signins", type=int, default=100_000)
    parser.add_argument("--checkpoints", default="1000,10000")
    args = parser.parse_args()
    child(args.db, args.signins, [int(c) for c in args.checkpoints.split(",") if c])


if __name__ == "__main__":
    main()
