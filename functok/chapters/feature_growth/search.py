"""The sparsity-coefficient search of chapter 4: train SAEs until the target quality is bracketed (one
SAE scores above it, one below) and one is within tolerance of it (stepping, then interpolation in log
coefficient); `crossing` then interpolates log-linearly between the two bracketing coefficients, where
one more SAE is trained (the coefficient at the target, not the first one that happens to be close)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

INCREASING = {"topk": True, "batchtopk": True}  # the score rises with k; it falls with a penalty coefficient


@dataclass
class Trial:
    coefficient: float
    score: float
    payload: Any = None


def search_coefficient(
    score_of: Callable[[float], tuple[float, Any]],
    target: float,
    tolerance: float,
    start: float,
    max_steps: int,
    factor: float = 4.0,
    increasing: bool = False,
    prior_slope: float | None = None,
    integer: bool = False,
    bracket: bool = False,
) -> tuple[Trial, list[Trial]]:
    """Find a coefficient whose score is within `tolerance` of `target`, the score being monotone in
    log(coefficient) (decreasing unless `increasing`). `score_of(c) -> (score, payload)`. With
    `bracket`, a trial within tolerance stops the search only once another trial lies on the other
    side of the target (so `crossing` can interpolate); until then a trial within tolerance aims the next
    one half a tolerance past the target.

    Returns (the trial closest to the target, every trial in order). `prior_slope`: d score /
    d log(c) from a similar problem (the previous checkpoint), used for the first step."""
    trials: list[Trial] = []
    sign = 1.0 if increasing else -1.0
    u = math.log(start)
    max_jump = math.log(factor)
    tried_u: set[float] = set()
    for _ in range(max_steps):
        c = math.exp(u)
        if integer:
            c = float(max(1, round(c)))
            u = math.log(c)
        if round(u, 9) in tried_u:  # a repeated proposal (integer rounding): bisect the bracket instead
            mid = _bisect_u(trials, target)
            if mid is None:
                break
            c = float(max(1, round(math.exp(mid)))) if integer else math.exp(mid)
            u = math.log(c)
            if round(u, 9) in tried_u:
                break
        tried_u.add(round(u, 9))
        s, payload = score_of(c)
        trials.append(Trial(c, float(s), payload))
        if not math.isfinite(s):
            break
        near = min(abs(t.score - target) for t in trials if math.isfinite(t.score)) <= tolerance
        bracketed = bracket_of(trials, target) is not None
        if near and (not bracket or bracketed):
            break
        goal = target
        if bracket and abs(s - target) <= tolerance and not bracketed:  # close, one side only: aim just past it
            goal = target + math.copysign(0.5 * tolerance, target - s)
        u = _next_u(trials, goal, sign, max_jump, prior_slope)
    best = min(trials, key=lambda t: abs(t.score - target) if math.isfinite(t.score) else math.inf)
    return best, trials


def _next_u(trials: list[Trial], target: float, sign: float, max_jump: float, prior_slope: float | None) -> float:
    pts = sorted((math.log(t.coefficient), t.score) for t in trials if math.isfinite(t.score))
    pairs = [(a, b) for a, b in zip(pts, pts[1:]) if (a[1] - target) * (b[1] - target) < 0]
    if pairs:  # bracketed: interpolate inside the bracket around the best trial, keeping away from its ends
        best_u = math.log(min(trials, key=lambda t: abs(t.score - target)).coefficient)
        a, b = min(pairs, key=lambda p: min(abs(p[0][0] - best_u), abs(p[1][0] - best_u)))
        frac = (target - a[1]) / (b[1] - a[1])
        return a[0] + min(0.7, max(0.3, frac)) * (b[0] - a[0])  # >= 30% shrink per step, also on cliffs
    last = math.log(trials[-1].coefficient)
    u, s = next(p for p in pts if p[0] == last)
    direction = sign * (1.0 if s < target else -1.0)  # move toward the target
    slope = None
    recent = [(math.log(t.coefficient), t.score) for t in trials[-2:]]
    if len(recent) == 2 and recent[0][0] != recent[1][0]:
        slope = (recent[1][1] - recent[0][1]) / (recent[1][0] - recent[0][0])
    elif prior_slope is not None:
        slope = prior_slope
    same_side = sum(1 for p in pts if (p[1] > target) == (s > target))
    # the log step doubles from the third trial on the same side (a cliff near an early checkpoint's floor
    # makes a big jump overshoot into dead dictionaries)
    limit = max_jump * 2 ** max(0, same_side - 2)
    if slope is not None and slope * sign > 0:
        step = abs((target - s) / slope) * 1.2  # aim slightly past the target to bracket it
        step = min(max(step, math.log(1.25)), limit)
    else:
        step = limit
    return u + direction * step


def _bisect_u(trials: list[Trial], target: float) -> float | None:
    """Midpoint of the bracket around the target (a fallback when a proposal repeats a tried value)."""
    pts = sorted((math.log(t.coefficient), t.score) for t in trials if math.isfinite(t.score))
    pairs = [(a, b) for a, b in zip(pts, pts[1:]) if (a[1] - target) * (b[1] - target) < 0]
    return (pairs[0][0][0] + pairs[0][1][0]) / 2 if pairs else None


def bracket_of(trials: list[Trial], target: float) -> tuple[Trial, Trial] | None:
    """The two trials adjacent in coefficient whose scores lie on either side of the target (one may
    equal it); where noise makes several such pairs, the one holding the trial closest to the target."""
    pts = sorted((t for t in trials if math.isfinite(t.score)), key=lambda t: t.coefficient)
    pairs = [
        (a, b)
        for a, b in zip(pts, pts[1:])
        if (a.score - target) * (b.score - target) <= 0 and a.coefficient != b.coefficient and a.score != b.score
    ]
    if not pairs:
        return None
    return min(pairs, key=lambda p: min(abs(p[0].score - target), abs(p[1].score - target)))


def crossing(trials: list[Trial], target: float, integer: bool = False) -> float | None:
    """The coefficient where the score reaches the target, by linear interpolation of the score in
    log(coefficient) between the bracketing trials (`bracket_of`); None when the target is not bracketed.
    `integer` (top-k's k): rounded to the nearest integer."""
    pair = bracket_of(trials, target)
    if pair is None:
        return None
    a, b = pair
    ua, ub = math.log(a.coefficient), math.log(b.coefficient)
    u = ua + (target - a.score) / (b.score - a.score) * (ub - ua)
    c = math.exp(u)
    return float(max(1, round(c))) if integer else c
