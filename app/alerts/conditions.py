"""The pure part of evaluation: a compiled rule, a (rule, device) state and readings in, changes
out. No I/O here; `evaluator` (API) and `sweep` (beat) store what this decides.

Every condition judges readings on their own time (`ts`), in time order; a reading not newer
than the newest one the state has seen is skipped, so late or out-of-order data never raises
(or clears) an alarm for a time older than the alarm's own state.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from app.alerts.models import AlertRule, ConditionType, Severity
from app.readings.models import field_key

Point = tuple[int, float | None]
State = dict[str, Any]
Compare = Callable[[float, float], bool]

OPS: dict[str, Compare] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}

# One closure per op and constant: a single call per reading on the hot path.
_AGAINST: dict[str, Callable[[float], Callable[[float], bool]]] = {
    ">": lambda v: lambda x: x > v,
    ">=": lambda v: lambda x: x >= v,
    "<": lambda v: lambda x: x < v,
    "<=": lambda v: lambda x: x <= v,
    "==": lambda v: lambda x: x == v,
    "!=": lambda v: lambda x: x != v,
}

# The clear test a hysteresis band h gives each op: `> v` clears at or below `v - h`, ...
_HYSTERESIS: dict[str, Callable[[float, float, float], bool]] = {
    ">": lambda x, v, h: x <= v - h,
    ">=": lambda x, v, h: x < v - h,
    "<": lambda x, v, h: x >= v + h,
    "<=": lambda x, v, h: x > v + h,
}


@dataclass(frozen=True, slots=True)
class Change:
    """One decision: raise (or repeat, while active) or clear, at a reading's time."""

    kind: Literal["raise", "clear"]
    ts_ms: int
    value: float | None


@dataclass(slots=True)
class Compiled:
    """A rule made ready for evaluation (built once per rule version and cached)."""

    rule: AlertRule
    id: str
    type: ConditionType
    severity: Severity
    key: str | None  # stored metric key, None when any reading counts
    trigger: Callable[[float], bool] = field(default=lambda _: False)
    clears: Callable[[float], bool] = field(default=lambda _: True)
    for_ms: int = 0
    k: float = 0.0
    clear_k: float = 0.0
    alpha: float = 0.0
    min_samples: int = 0
    window_ms: int = 0
    n: int | None = None
    delta: float | None = None
    max_points: int = 0
    after_ms: int = 0


def compile_rule(rule: AlertRule, *, rate_points_max: int) -> Compiled:
    """Turn a stored rule into the closures and numbers evaluation uses."""
    cond = rule.condition
    kind = ConditionType(cond["type"])
    metric = cond.get("metric")
    compiled = Compiled(
        rule=rule,
        id=str(rule.id),
        type=kind,
        severity=rule.severity,
        key=field_key(metric) if metric else None,
    )
    if kind is ConditionType.THRESHOLD:
        op, value = OPS[cond["op"]], float(cond["value"])
        compiled.trigger = _AGAINST[cond["op"]](value)
        clear, hysteresis = cond.get("clear"), cond.get("hysteresis")
        if clear is not None:
            compiled.clears = _AGAINST[clear["op"]](float(clear["value"]))
        elif hysteresis is not None:
            band, h = _HYSTERESIS[cond["op"]], float(hysteresis)
            compiled.clears = lambda x: band(x, value, h)
        else:
            compiled.clears = lambda x: not op(x, value)
        compiled.for_ms = int(cond.get("for_s") or 0) * 1000
    elif kind is ConditionType.ANOMALY:
        compiled.k = float(cond["k"])
        compiled.clear_k = float(cond.get("clear_k") or cond["k"])
        compiled.alpha = 2.0 / (int(cond["window"]) + 1)
        compiled.min_samples = int(cond.get("min_samples") or 10)
    elif kind is ConditionType.RATE:
        compiled.window_ms = int(cond["window_s"]) * 1000
        compiled.n = cond.get("n")
        compiled.delta = cond.get("delta")
        cap = compiled.n + 1 if compiled.n is not None else rate_points_max
        compiled.max_points = min(cap, rate_points_max)
    elif kind is ConditionType.NO_DATA:
        compiled.after_ms = int(cond["after_s"]) * 1000
    return compiled


def evaluate(rule: Compiled, state: State, points: Sequence[Point], *, now_ms: int) -> list[Change]:
    """Apply readings (time order) to `state` in place; the raises and clears they cause."""
    if rule.type is ConditionType.THRESHOLD:
        return _threshold(rule, state, points, now_ms=now_ms)
    if rule.type is ConditionType.ANOMALY:
        return _anomaly(rule, state, points)
    if rule.type is ConditionType.RATE:
        return _rate(rule, state, points)
    return []  # no_data is judged by the beat; data arriving clears it (evaluator)


def _threshold(
    rule: Compiled, state: State, points: Sequence[Point], *, now_ms: int
) -> list[Change]:
    changes: list[Change] = []
    last = state.get("last_ms", -1)
    active = bool(state.get("active"))
    pending = state.get("pending_ms")
    trigger, clears, for_ms = rule.trigger, rule.clears, rule.for_ms
    last_value: float | None = None
    for ts, x in points:
        if ts <= last or x is None:
            continue
        last, last_value = ts, x
        if active:
            if clears(x):
                changes.append(Change("clear", ts, x))
                active = False
            elif trigger(x):
                changes.append(Change("raise", ts, x))
        elif trigger(x):
            if not for_ms:
                changes.append(Change("raise", ts, x))
                active = True
                continue
            if pending is None:
                pending = ts
            if ts - pending >= for_ms:
                changes.append(Change("raise", ts, x))
                active, pending = True, None
        elif pending is not None:
            if clears(x) and pending + for_ms <= min(ts, now_ms):
                # The beat may have raised it meanwhile (for_s expiry): clear whatever is there.
                changes.append(Change("clear", ts, x))
            if not trigger(x):
                pending = None
    state["last_ms"] = last
    state["active"] = active
    if last_value is not None:
        state["last_v"] = last_value
    if pending is None:
        state.pop("pending_ms", None)
        state.pop("due_ms", None)
    else:
        state["pending_ms"] = pending
        state["due_ms"] = pending + for_ms
    return changes


def _anomaly(rule: Compiled, state: State, points: Sequence[Point]) -> list[Change]:
    changes: list[Change] = []
    last = state.get("last_ms", -1)
    active = bool(state.get("active"))
    n, mean, var = state.get("anomaly") or (0, 0.0, 0.0)
    alpha, warm = rule.alpha, rule.min_samples
    # |z| > k  <=>  diff² > k²·var (with var = 0, any difference is infinitely far): no sqrt.
    k2, clear_k2 = rule.k * rule.k, rule.clear_k * rule.clear_k
    # Exact running mean/variance (Welford) while 1/(n+1) > alpha, then EWMA over ~window.
    exact_until = 1.0 / alpha - 1
    for ts, x in points:
        if ts <= last or x is None:
            continue
        last = ts
        diff = x - mean
        if n >= warm:
            d2 = diff * diff
            if d2 > k2 * var:
                changes.append(Change("raise", ts, x))
                active = True
            elif active and d2 <= clear_k2 * var:
                changes.append(Change("clear", ts, x))
                active = False
        a = alpha if n >= exact_until else 1.0 / (n + 1)
        incr = a * diff
        mean += incr
        var = (1 - a) * (var + diff * incr)
        n += 1
    state["last_ms"] = last
    state["active"] = active
    state["anomaly"] = [min(n, 1 << 30), mean, var]
    return changes


def _rate(rule: Compiled, state: State, points: Sequence[Point]) -> list[Change]:
    changes: list[Change] = []
    last = state.get("last_ms", -1)
    active = bool(state.get("active"))
    window: list[list[Any]] = list(state.get("rate") or [])
    for ts, x in points:
        if ts <= last:
            continue
        if rule.delta is not None and x is None:
            continue
        last = ts
        cutoff = ts - rule.window_ms
        window = [p for p in window if p[0] > cutoff]
        if rule.n is not None:
            violated = len(window) + 1 > rule.n
        else:
            assert x is not None
            violated = any(abs(x - p[1]) > rule.delta for p in window)
        window.append([ts, x])
        if len(window) > rule.max_points:
            window = window[-rule.max_points :]
        if violated:
            changes.append(Change("raise", ts, x))
            active = True
        elif active:
            changes.append(Change("clear", ts, x))
            active = False
    state["last_ms"] = last
    state["active"] = active
    state["rate"] = window
    return changes


def numeric(value: Any) -> float | None:
    """A reading value as a number for comparisons (booleans as 0/1; strings: None)."""
    if type(value) is float:
        return value
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return None
