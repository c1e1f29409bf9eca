"""The dashboard as a picture: its queries over a real local search, drawn with matplotlib.

No Grafana server runs here (docs/monitoring.md), so ``make dashboard-png`` does what
Grafana would: it runs a search (``kubenas run --metrics-port``) scraped by a real
Prometheus, sends every panel's PromQL to ``/api/v1/query_range`` and draws the answers, one
line of small multiples per dashboard row, each panel where the dashboard puts it. Stat
panels show their last value, the heatmap its buckets, time series their lines.

    python -m nas_operator.monitoring.picture SEARCH.yaml OUT.png
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nas_operator.monitoring.dashboard import render as dashboard_json
from nas_operator.monitoring.prometheus import Prometheus, Series, find_binary
from nas_operator.monitoring.scraped_run import scraped_search

POINTS = 150
"""Samples per line: the step is the run's length over this."""


def substitute(expr: str, window: str, rate_interval: str, interval: str) -> str:
    """Grafana's variables with every namespace, search and job selected ('All')."""
    values = {"namespace": ".*", "search": ".*", "job": ".*", "window": window,
              "__rate_interval": rate_interval, "__interval": interval}
    return re.sub(r"\$(\w+)", lambda m: values[m.group(1)], expr)


def legend(fmt: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt) or "value"


def grid_lines(board: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(row title, panels) for each line of the dashboard's grid, top to bottom: a row of
    wide panels may span two lines."""
    lines: dict[int, tuple[str, list[dict[str, Any]]]] = {}
    row = ""
    for panel in board["panels"]:
        if panel["type"] == "row":
            row = panel["title"]
            continue
        lines.setdefault(panel["gridPos"]["y"], (row, []))[1].append(panel)
    return [lines[y] for y in sorted(lines)]


def panel_data(prom: Prometheus, panel: dict[str, Any], start: float, end: float,
               ) -> list[tuple[str, Series, str]]:
    """(legend, series, refId) of every target of ``panel`` over [start, end]."""
    step = max(1.0, (end - start) / POINTS)
    span = f"{max(10, int(end - start) + 5)}s"  # quantiles and counts over the whole run
    out = []
    for target in panel["targets"]:
        expr = substitute(target["expr"], window=span, rate_interval=f"{int(4 * step) + 10}s",
                          interval=f"{int(step * 10)}s")
        for series in prom.query_range(expr, start, end, step):
            out.append((legend(target.get("legendFormat", ""), series.labels), series,
                        target.get("refId", "")))
    return out


def right_axis_refs(panel: dict[str, Any]) -> set[str]:
    """Targets the panel draws against a right-hand axis (a field override)."""
    refs = set()
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        matcher = override.get("matcher", {})
        if matcher.get("id") == "byFrameRefID" and any(
                prop.get("id") == "custom.axisPlacement" and prop.get("value") == "right"
                for prop in override.get("properties", [])):
            refs.add(matcher.get("options"))
    return refs


def _draw_stat(ax: Any, data: list[tuple[str, Series, str]]) -> None:
    ax.axis("off")
    shown = data[:6]
    for i, (name, series, _) in enumerate(shown):
        value = series.last
        text = f"{value:.4g}" if math.isfinite(value) else "-"
        y = 1 - (i + 0.5) / max(1, len(shown))
        ax.text(0.5, y, f"{name}: {text}", ha="center", va="center",
                fontsize=14 if len(shown) < 3 else 10, transform=ax.transAxes)


def _draw_heatmap(ax: Any, data: list[tuple[str, Series, str]], start: float) -> None:
    """Trials per reward bucket and time slot (the cumulative buckets differenced)."""
    import matplotlib
    import numpy as np

    bounds = sorted({float(name) for name, _, _ in data})
    by_le = {float(name): series for name, series, _ in data}
    times = [s.t - start for s in data[0][1].samples] if data else []
    grid = np.zeros((len(bounds), len(times)))
    for i, le in enumerate(bounds):
        values = [s.v for s in by_le[le].samples]
        below = [s.v for s in by_le[bounds[i - 1]].samples] if i else [0.0] * len(values)
        grid[i, :len(values)] = np.maximum(0, np.array(values) - np.array(below[:len(values)]))
    finite_bounds = [b for b in bounds if math.isfinite(b)]
    labels = [f"{b:g}" for b in finite_bounds] + ["+Inf"] * (len(bounds) - len(finite_bounds))
    if times:
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
        ax.pcolormesh(times, range(len(bounds)), np.ma.masked_equal(grid, 0), shading="nearest",
                      cmap=cmap)
    ax.set_yticks(range(0, len(bounds), 4), labels[::4], fontsize=7)
    ax.set_ylabel("reward bucket (le)", fontsize=8)


def _draw_lines(ax: Any, data: list[tuple[str, Series, str]], start: float, unit: str,
                right: set[str]) -> None:
    twin = ax.twinx() if any(ref in right for _, _, ref in data) else None
    for i, (name, series, ref) in enumerate(data):
        target = twin if twin is not None and ref in right else ax
        target.plot([s.t - start for s in series.samples], [s.v for s in series.samples],
                    label=name + (" (right)" if target is twin else ""), linewidth=1.2,
                    color=f"C{i}")
    handles = [h for a in (ax, twin) if a is not None for h in a.get_legend_handles_labels()[0]]
    if handles:
        ax.legend(handles=handles, fontsize=6, loc="best")
    if twin is not None:
        twin.tick_params(labelsize=7)
    if unit in ("s", "bytes"):
        ax.set_ylabel(unit, fontsize=8)


def render(prom: Prometheus, start: float, end: float, out: Path, subtitle: str) -> None:
    """Draw the dashboard's panels over [start, end] into ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.gridspec import GridSpec

    board = json.loads(dashboard_json())
    rows = grid_lines(board)
    heights = [max(p["gridPos"]["h"] for p in panels) for _, panels in rows]
    fig = plt.figure(figsize=(18, sum(heights) * 0.42 + 1.2), dpi=80)
    grid = GridSpec(len(rows), 24, figure=fig, height_ratios=heights, hspace=0.6, wspace=3,
                    left=0.04, right=0.99, top=1 - 1.4 / (sum(heights) * 0.42 + 1.2),
                    bottom=0.03)
    for r, (row_title, panels) in enumerate(rows):
        for panel in panels:
            g = panel["gridPos"]
            ax = fig.add_subplot(grid[r, g["x"]:g["x"] + g["w"]])
            data = panel_data(prom, panel, start, end)
            if panel["type"] == "stat":
                _draw_stat(ax, data)
            elif panel["type"] == "heatmap":
                _draw_heatmap(ax, data, start)
            else:
                _draw_lines(ax, data, start, panel.get("fieldConfig", {}).get(
                    "defaults", {}).get("unit", ""), right_axis_refs(panel))
                ax.tick_params(labelsize=7)
                ax.set_xlabel("seconds into the run", fontsize=7)
            ax.set_title(f"{row_title} | {panel['title']}", fontsize=9, loc="left")
    fig.suptitle("kubenas dashboard: its PromQL over a real local search, from Prometheus "
                 "query_range (a matplotlib rendering, not Grafana)\n" + subtitle, fontsize=12)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nas_operator.monitoring.picture",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("search", type=Path, help="the NASSearch to run, e.g. examples/local-demo.yaml")
    parser.add_argument("out", type=Path, help="the PNG to write")
    args = parser.parse_args(argv)
    binary = find_binary("prometheus")
    if binary is None:
        print("error: prometheus is not installed; `apt-get install -y prometheus` (Debian)",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="kubenas-dashboard-") as tmp, \
            scraped_search(binary, args.search, Path(tmp)) as (prom, run):
        if run.exit_code != 0:
            print(run.output, file=sys.stderr)
            return 1
        minutes = (run.last_scrape - run.first_scrape) / 60
        subtitle = (f"kubenas run {args.search} --metrics-port P, scraped every "
                    f"{prom.interval:g} s; {minutes:.1f} min, {run.scrapes} scrapes, "
                    f"drawn {time.strftime('%Y-%m-%d')}")
        render(prom, run.first_scrape, run.last_scrape, args.out, subtitle)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
