"""``python -m bench``: run every benchmark module and write one report with the machine and date.

Each module runs as its own process (``python -m bench.<module> [--quick]``), so
one that crashes or is missing costs only its own section; its exit status,
wall time and error tail are recorded instead. The report goes to
``bench/RESULTS.md`` for a full run (the committed file: regenerated, never
edited by hand); ``--quick`` writes ``bench/out/RESULTS-quick.md`` and a full
run restricted with ``--only`` writes ``bench/out/RESULTS-partial.md``, so
neither ever replaces the committed figures with partial ones.

``--only NAME --update`` reruns only the named modules and splices their
sections into the committed ``bench/RESULTS.md``, keeping every other section
verbatim from the run that made it (the header says which, and from when).
Whenever the committed report is written, the README's headline block is
regenerated from the ``Headline:`` lines in it (``bench.headlines``).

    python -m bench [--quick] [--only NAME ... [--update]] [--note TEXT] [--out FILE]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.headlines import update_readme
from bench.machine import REPO_ROOT, machine
from bench.table import format_table

BENCH_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Module:
    """One benchmark module and where its output goes in the report."""

    name: str
    title: str
    section: str


SECTIONS = {
    "quality": "1. Search quality at equal budget",
    "sharing": "2. Weight sharing against multi-trial",
    "overhead": "3. Orchestration overhead",
    "budget": "4. Fewer epochs and budgets: early stopping, limits, multiple objectives",
}
MODULES = [
    Module("bench_fashion_search", "Strategies on the Fashion-MNIST table (512 architectures, 50 seeds)",
           "quality"),
    Module("bench_search_quality", "Strategies on the digits table (too easy to tell them apart)", "quality"),
    Module("bench_ptb", "The recurrent spaces on the real Penn Treebank: zoph-le-rnn and enas-rnn searches, "
           "the ENAS cell trained briefly", "quality"),
    Module("bench_supernet_ranking", "ENAS supernet ranking of every enas-macro L=3 child (digits table)",
           "sharing"),
    Module("bench_fashion_supernet", "ENAS supernet ranking of all 512 children of the Fashion-MNIST table",
           "sharing"),
    Module("bench_weight_sharing", "ENAS against multi-trial REINFORCE", "sharing"),
    Module("bench_darts", "DARTS steps/s and time to the same loss on 1 and 2 gloo workers; skip edges per epoch", "sharing"),
    Module("bench_controller", "Controller ask/update cost and checkpoint size per space", "overhead"),
    Module("bench_loop", "Status-API reports/s, report-to-next-launch latency, loop memory", "overhead"),
    Module("bench_operator", "Operator on a Kubernetes API: requests per trial, memory", "overhead"),
    Module("bench_scale", "A long search: operator RSS, requests and etcd bytes per trial, with and "
           "without retention", "overhead"),
    Module("bench_faults", "Faults: operator and kubenas run SIGKILLed, status-API fuzz", "overhead"),
    Module("bench_trainer", "Trainer throughput against a plain PyTorch loop", "overhead"),
    Module("bench_spaces", "Child build and forward+backward time per space", "overhead"),
    Module("bench_enas", "ENAS search epoch cost", "overhead"),
    Module("bench_early_stopping", "Early stopping and limits before training, replayed on the Fashion-MNIST "
           "curves", "budget"),
    Module("bench_pareto", "Multi-objective search: accuracy against latency and multiply-adds (Fashion-MNIST "
           "table)", "budget"),
]


MISSING = -1000
"""Return code recorded for a module whose file is absent."""


@dataclass
class Outcome:
    module: Module
    returncode: int | None
    """None: the module timed out."""
    seconds: float
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Kept:
    """A module's section carried over from an earlier report by ``--update``."""

    block: str
    """The section's Markdown from its ``###`` heading on."""
    status: str
    wall: str


@dataclass(frozen=True)
class Earlier:
    """What ``--update`` keeps of the committed report: its date, commit and sections."""

    date: str
    commit: str
    sections: dict[str, Kept]


def read_earlier(text: str) -> Earlier:
    """Split a report written by ``render`` into its per-module sections (keyed by the module's
    command line, which survives a change of title) and the rows of its Runs table."""
    rows = {m.group(1): (re.sub(r"^(kept: )+", "", m.group(2).strip()), m.group(3).strip())
            for m in re.finditer(r"^\| bench\.(\w+)\s*\|[^|\n]*\|([^|\n]*)\|([^|\n]*)\|$", text, re.M)}
    found_date = re.search(r"^- date: (.+)$", text, re.M)
    found_commit = re.search(r"^\| commit\s*\|\s*(\S+)", text, re.M)
    date = found_date.group(1) if found_date else "?"
    commit = found_commit.group(1) if found_commit else "?"
    sections: dict[str, Kept] = {}
    # a section starts at a ### heading whose next line is a module's command line (a module's own
    # output may hold ### headings too) and ends at the next section or top-level heading
    starts = r"\n(?=### [^\n]*\n\n`python -m bench\.|## )"
    for block in re.split(starts, text):
        found = re.search(r"^`python -m bench\.(\w+)`.*s wall(?: \(from the run of .*\))?\.$", block, re.M)
        if block.startswith("### ") and found:
            status, wall = rows.get(found.group(1), ("?", "?"))
            line = found.group(0)
            if "(from the run of" not in line:  # a section kept twice keeps its first provenance
                block = block.replace(line, line[:-1] + f" (from the run of {date}, commit {commit}).")
            sections[found.group(1)] = Kept(block.strip(), status, wall)
    return Earlier(date, commit, sections)


def select(only: list[str] | None) -> list[Module]:
    """Modules named by ``--only`` (``bench_loop``, ``loop`` or ``bench.bench_loop``), in report order."""
    if not only:
        return list(MODULES)
    wanted = {n.strip().removeprefix("bench.").removeprefix("bench_") for arg in only for n in arg.split(",")}
    known = {m.name.removeprefix("bench_") for m in MODULES}
    unknown = wanted - known
    if unknown:
        raise SystemExit(f"--only: unknown module(s) {sorted(unknown)}; choose from {sorted(known)}")
    return [m for m in MODULES if m.name.removeprefix("bench_") in wanted]


def run_module(module: Module, quick: bool, timeout: float) -> Outcome:
    """Run one module in a child process from the repository root; never raises for its failures."""
    if not (BENCH_DIR / f"{module.name}.py").exists():
        return Outcome(module, MISSING, 0.0, "", f"bench/{module.name}.py is not in this checkout")
    cmd = [sys.executable, "-m", f"bench.{module.name}"] + (["--quick"] if quick else [])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, out, err = None, _text(exc.stdout), _text(exc.stderr) + f"\ntimed out after {timeout:.0f} s"
    return Outcome(module, code, time.perf_counter() - started, out, err)


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


def load_note(before: tuple[float, float, float], after: tuple[float, float, float]) -> str:
    cores = os.cpu_count() or 1
    return (f"1-minute load average {before[0]:.1f} at the start and {after[0]:.1f} at the end, "
            f"on {cores} cores (above {cores} means other work shared the machine and wall times "
            f"are inflated; CPU-seconds are affected less)")


def render(outcomes: list[Outcome], quick: bool, started: datetime, wall: float,
           load: str, note: str | None, earlier: Earlier | None = None) -> str:
    """The whole report as Markdown: header, machine, summary of runs, then each section; with
    ``earlier``, the modules not run now keep their sections from it."""
    ran = {o.module.name for o in outcomes}
    kept = {m.name: earlier.sections[m.name] for m in MODULES
            if earlier and m.name not in ran and m.name in earlier.sections}
    mode = "quick (smoke-test sizes; not for quoting)" if quick else "full"
    lines = [
        "# kubenas benchmarks",
        "",
        "Generated by `python -m bench" + (" --quick" if quick else "") + "` (`make bench`); "
        "do not edit by hand, rerun it.",
        "",
        f"- date: {started.strftime('%Y-%m-%d %H:%M UTC')}",
        f"- mode: {mode}",
        f"- total wall time: {wall / 60:.1f} min",
        f"- load: {load}",
    ]
    if note:
        lines.append(f"- note: {note}")
    if earlier and kept:
        lines.append(f"- updated: only {', '.join(f'bench.{n}' for n in sorted(ran))} ran now; the "
                     f"sections of {', '.join(f'bench.{n}' for n in kept)} are kept from earlier runs "
                     "(each names its date and commit; their machine is in that commit's report)")
    lines += ["", "## Machine", "", format_table(["", ""], machine()), "", "## Runs", ""]
    by_name = {o.module.name: o for o in outcomes}
    shown = [m for m in MODULES if m.name in by_name or m.name in kept]
    lines.append(format_table(
        ["module", "section", "status", "wall s"],
        [[f"bench.{m.name}", SECTIONS[m.section].split(". ", 1)[1],
          _status(by_name[m.name]) if m.name in by_name else f"kept: {kept[m.name].status}",
          f"{by_name[m.name].seconds:.0f}" if m.name in by_name else kept[m.name].wall] for m in shown]))
    for key, heading in SECTIONS.items():
        members = [m for m in shown if m.section == key]
        if not members:
            continue
        lines += ["", f"## {heading}"]
        for m in members:
            if m.name not in by_name:
                lines += ["", kept[m.name].block]
                continue
            o = by_name[m.name]
            lines += ["", f"### {o.module.title}", "",
                      f"`python -m bench.{o.module.name}{' --quick' if quick else ''}`: "
                      f"{_status(o)}, {o.seconds:.0f} s wall.", ""]
            if o.stdout.strip():
                lines.append(o.stdout.strip())
            if o.returncode != 0:
                tail = "\n".join(o.stderr.strip().splitlines()[-15:])
                lines += ["", "```", tail or "(no error output)", "```"]
    return "\n".join(lines) + "\n"


def _status(o: Outcome) -> str:
    if o.returncode is None:
        return "timed out"
    if o.returncode == MISSING:
        return "missing"
    return "ok" if o.returncode == 0 else f"failed (exit {o.returncode})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes, a few minutes in all")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only these modules (repeat or comma-separate), e.g. search_quality")
    parser.add_argument("--note", help="a line for the report, e.g. that the machine was shared")
    parser.add_argument("--out", type=Path, help="report path (default depends on the mode)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per module")
    parser.add_argument("--update", action="store_true",
                        help="with --only: splice the rerun sections into the committed bench/RESULTS.md")
    args = parser.parse_args(argv)
    modules = select(args.only)
    if args.update and (args.quick or not args.only):
        raise SystemExit("--update needs --only NAME and a full run (not --quick): it replaces those "
                         "sections of bench/RESULTS.md and keeps the rest")
    earlier = None
    if args.out is not None:
        out = args.out
    elif args.update:
        out = BENCH_DIR / "RESULTS.md"
    elif args.quick:
        out = BENCH_DIR / "out" / "RESULTS-quick.md"
    elif args.only:
        out = BENCH_DIR / "out" / "RESULTS-partial.md"
    else:
        out = BENCH_DIR / "RESULTS.md"
    timeout = args.timeout or (900.0 if args.quick else 3 * 3600.0)

    started, clock, load_before = datetime.now(UTC), time.perf_counter(), os.getloadavg()
    outcomes = []
    for module in modules:
        print(f"== bench.{module.name}{' --quick' if args.quick else ''}", flush=True)
        outcome = run_module(module, args.quick, timeout)
        print(outcome.stdout.rstrip())
        if outcome.returncode != 0:
            print(outcome.stderr.rstrip()[-3000:], file=sys.stderr)
        print(f"-- {_status(outcome)} in {outcome.seconds:.0f} s\n", flush=True)
        outcomes.append(outcome)
    out.parent.mkdir(parents=True, exist_ok=True)
    (BENCH_DIR / "out").mkdir(exist_ok=True)
    with open(BENCH_DIR / "out" / "results.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # --update reads the report at the end, under a lock, so
        if args.update and out.exists():  # two updates of different sections both survive
            earlier = read_earlier(out.read_text())
        report = render(outcomes, args.quick, started, time.perf_counter() - clock,
                        load_note(load_before, os.getloadavg()), args.note, earlier)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(report)
        os.replace(tmp, out)
        if out == BENCH_DIR / "RESULTS.md" and update_readme(out, REPO_ROOT / "README.md"):
            print("rewrote the README's headlines from it")
    print(f"wrote {out}")
    return 0 if all(o.returncode == 0 for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
