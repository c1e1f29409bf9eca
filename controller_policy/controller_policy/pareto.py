"""Pareto geometry of a multi-objective search: dominance, fronts, crowding, hypervolume.

Pure Python (no torch, no Kubernetes), shared by the evolution strategy's Pareto
selection, the loop's front in the NASSearch status, the Prometheus gauges and the
benchmark. Every function here reads points whose coordinates are all to be
*maximized*; ``orient`` turns a metric vector with per-objective directions into
that form (a minimized metric is negated), so one convention holds throughout.

Ties and duplicates: equal points never dominate each other, so duplicates share a
front. Orders are stable (by value, then by index), so every result is
deterministic, which the strategy's restart-exactness relies on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

Direction = Literal["maximize", "minimize"]
Point = Sequence[float]


class ParetoError(ValueError):
    """Points of different lengths, a non-finite coordinate, or a bad reference point."""


def orient(values: Sequence[float], directions: Sequence[Direction]) -> tuple[float, ...]:
    """``values`` as an all-maximize point: minimized coordinates negated."""
    if len(values) != len(directions):
        raise ParetoError(f"{len(values)} values for {len(directions)} directions")
    out = []
    for v, d in zip(values, directions, strict=True):
        if d not in ("maximize", "minimize"):
            raise ParetoError(f"direction must be 'maximize' or 'minimize', got {d!r}")
        out.append(float(v) if d == "maximize" else -float(v))
    return tuple(out)


def _check(points: Sequence[Point]) -> int:
    """The common dimension of ``points`` (0 for no points); refuses ragged or non-finite ones."""
    if not points:
        return 0
    k = len(points[0])
    if k == 0:
        raise ParetoError("a point needs at least one coordinate")
    for p in points:
        if len(p) != k:
            raise ParetoError(f"points of different dimensions ({k} and {len(p)})")
        for v in p:
            if not math.isfinite(v):
                raise ParetoError(f"coordinate {v!r} is not finite")
    return k


def dominates(a: Point, b: Point) -> bool:
    """Whether ``a`` is at least as good as ``b`` everywhere and better somewhere (maximizing)."""
    if len(a) != len(b):
        raise ParetoError(f"points of different dimensions ({len(a)} and {len(b)})")
    better = False
    for x, y in zip(a, b, strict=True):
        if x < y:
            return False
        if x > y:
            better = True
    return better


def non_dominated_sort(points: Sequence[Point]) -> list[list[int]]:
    """Fronts of indices, best first (NSGA-II's fast non-dominated sort); each front ascending."""
    _check(points)
    n = len(points)
    dominated_by: list[list[int]] = [[] for _ in range(n)]
    counts = [0] * n
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(points[i], points[j]):
                dominated_by[i].append(j)
                counts[j] += 1
            elif dominates(points[j], points[i]):
                dominated_by[j].append(i)
                counts[i] += 1
    fronts: list[list[int]] = []
    current = [i for i in range(n) if counts[i] == 0]
    while current:
        fronts.append(current)
        nxt: list[int] = []
        for i in current:
            for j in dominated_by[i]:
                counts[j] -= 1
                if counts[j] == 0:
                    nxt.append(j)
        current = sorted(nxt)
    return fronts


def ranks(points: Sequence[Point]) -> list[int]:
    """Non-domination rank of every point (0 = on the Pareto front)."""
    out = [0] * len(points)
    for r, front in enumerate(non_dominated_sort(points)):
        for i in front:
            out[i] = r
    return out


def pareto_front(points: Sequence[Point]) -> list[int]:
    """Indices of the points no other point dominates, ascending."""
    fronts = non_dominated_sort(points)
    return fronts[0] if fronts else []


def crowding_distance(points: Sequence[Point]) -> list[float]:
    """NSGA-II crowding distance of each point within ``points`` (meant to be one front).

    Per objective the points are ordered by value (ties by index); the two ends get
    ``inf`` and an inner point the gap between its neighbours over the objective's
    range. An objective on which all points are equal adds nothing (not even the
    ``inf`` ends, which would go to arbitrary duplicates). With two points or fewer
    every distance is ``inf``.
    """
    k = _check(points)
    n = len(points)
    dist = [0.0] * n
    if n <= 2:
        return [math.inf] * n
    for m in range(k):
        order = sorted(range(n), key=lambda i: (points[i][m], i))
        span = points[order[-1]][m] - points[order[0]][m]
        if span == 0:
            continue
        dist[order[0]] = dist[order[-1]] = math.inf
        for pos in range(1, n - 1):
            i = order[pos]
            if dist[i] != math.inf:
                dist[i] += (points[order[pos + 1]][m] - points[order[pos - 1]][m]) / span
    return dist


def rank_and_crowding(points: Sequence[Point]) -> list[tuple[int, float]]:
    """(rank, crowding distance within its front) per point: the NSGA-II selection key
    (lower rank wins, then larger distance)."""
    out: list[tuple[int, float]] = [(0, 0.0)] * len(points)
    for r, front in enumerate(non_dominated_sort(points)):
        for i, d in zip(front, crowding_distance([points[i] for i in front]), strict=True):
            out[i] = (r, d)
    return out


def better(a: tuple[int, float], b: tuple[int, float]) -> bool:
    """NSGA-II's crowded comparison: lower rank, or equal rank and larger crowding distance."""
    return a[0] < b[0] or (a[0] == b[0] and a[1] > b[1])


def bounded_front(points: Sequence[Point], limit: int) -> list[int]:
    """The Pareto front's indices, at most ``limit`` of them (ascending).

    When the front is larger, the most crowded member is dropped one at a time
    (crowding recomputed after each drop; ties drop the later index), which keeps
    the ends and spreads the rest, as NSGA-II truncates its last front.
    """
    if limit < 1:
        raise ParetoError(f"a front limit must be >= 1, got {limit}")
    keep = pareto_front(points)
    while len(keep) > limit:
        dist = crowding_distance([points[i] for i in keep])
        drop = min(range(len(keep)), key=lambda j: (dist[j], -keep[j]))
        del keep[drop]
    return keep


def hypervolume(points: Sequence[Point], reference: Point) -> float:
    """Volume dominated by ``points`` and bounded below by ``reference`` (maximizing).

    Only the parts of points beyond the reference count: a point not better than the
    reference in every coordinate adds nothing. Exact; 2-D is a sweep (n log n), more
    dimensions slice on the last coordinate recursively (fine for the small fronts and
    few objectives of a search, exponential in the dimension).
    """
    k = _check(points)
    if points and len(reference) != k:
        raise ParetoError(f"reference point has {len(reference)} coordinates, points have {k}")
    for v in reference:
        if not math.isfinite(v):
            raise ParetoError(f"reference coordinate {v!r} is not finite")
    useful = [tuple(p) for p in points if all(x > r for x, r in zip(p, reference, strict=True))]
    if not useful:
        return 0.0
    return _hv(useful, tuple(reference))


def _hv(points: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    k = len(ref)
    if k == 1:
        return max(p[0] for p in points) - ref[0]
    if k == 2:
        total, best_y = 0.0, ref[1]
        for x, y in sorted(points, key=lambda p: (-p[0], -p[1])):
            if y > best_y:
                total += (x - ref[0]) * (y - best_y)
                best_y = y
        return total
    levels = sorted({p[-1] for p in points}, reverse=True)
    total = 0.0
    for i, level in enumerate(levels):
        lower = levels[i + 1] if i + 1 < len(levels) else ref[-1]
        slab = [p[:-1] for p in points if p[-1] >= level]
        total += _hv(slab, ref[:-1]) * (level - lower)
    return total
