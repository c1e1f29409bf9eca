"""``python -m bench --only NAME --update``: rerun sections replace theirs in the committed report and
every other section is kept verbatim, with the header saying from when (docs/testing.md)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

from bench.__main__ import MODULES, Earlier, Outcome, read_earlier, render
from tests.support import REPO

BY_NAME = {m.name: m for m in MODULES}


def _report(outputs: dict[str, str], when: datetime, earlier: Earlier | None = None) -> str:
    outcomes = [Outcome(BY_NAME[n], 0, 7.0, text, "") for n, text in outputs.items()]
    return render(outcomes, quick=False, started=when, wall=1.0, load="n/a", note=None, earlier=earlier)


def test_update_replaces_the_rerun_section_and_keeps_the_others() -> None:
    old = _report({"bench_fashion_search": "| old fashion |", "bench_controller": "| controller table |",
                   "bench_loop": "### loop part one\n\n| loop table |\n\n### loop part two\n\n| loop 2 |"},
                  datetime(2026, 1, 2, 3, 4, tzinfo=UTC))
    earlier = read_earlier(old)
    assert set(earlier.sections) == {"bench_fashion_search", "bench_controller", "bench_loop"}
    assert earlier.date == "2026-01-02 03:04 UTC"
    new = _report({"bench_fashion_search": "| new fashion |"}, datetime(2026, 2, 1, tzinfo=UTC), earlier)
    assert "| new fashion |" in new and "| old fashion |" not in new
    assert "| controller table |" in new and "| loop table |" in new  # kept verbatim
    loop = earlier.sections["bench_loop"].block
    assert "| loop table |" in loop and "| loop 2 |" in loop and loop in new  # its own ### headings kept
    assert "s wall (from the run of 2026-01-02 03:04 UTC, commit " in new
    # updating again keeps each kept section's first date, not the date of the report it came through
    again = _report({"bench_controller": "| controller 3 |"}, datetime(2026, 3, 1, tzinfo=UTC), read_earlier(new))
    assert again.count("(from the run of 2026-01-02 03:04 UTC") == 1  # bench_loop
    assert "kept: kept" not in again and "| kept: ok " in again
    assert "(from the run of 2026-02-01 00:00 UTC" in again  # bench_fashion_search, run in February
    runs = new.split("## Runs", 1)[1].split("## 1.", 1)[0]
    assert "| bench.bench_controller" in runs and "kept: ok" in runs
    # report order is MODULES order, whatever ran
    assert new.index("### Strategies on the Fashion-MNIST") < new.index("`python -m bench.bench_controller`")
    assert new.index("`python -m bench.bench_controller`") < new.index("`python -m bench.bench_loop`")


def test_update_refuses_without_only() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench", "--update"], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode != 0 and "--update needs --only NAME" in proc.stderr
