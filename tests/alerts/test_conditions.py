"""The pure conditions: readings and state in, raises and clears out (no servers needed)."""

from __future__ import annotations

from typing import Any

from app.alerts.conditions import Change, compile_rule, evaluate
from app.alerts.models import AlertRule, ConditionType, Severity

NOW = 10**13  # far after every reading below


def rule(condition: dict[str, Any]) -> Any:
    """A compiled rule with this condition."""
    stored = AlertRule(
        name="r",
        scope_type="product",
        scope_id="0" * 24,
        severity=Severity.MAJOR,
        condition_type=ConditionType(condition["type"]),
        condition=condition,
        created_by="u",
    )
    return compile_rule(stored, rate_points_max=100)


def run(compiled: Any, state: dict[str, Any], values: list[tuple[int, float]]) -> list[Change]:
    """Evaluate readings given as (seconds, value)."""
    return evaluate(compiled, state, [(s * 1000, v) for s, v in values], now_ms=NOW)


def kinds(changes: list[Change]) -> list[str]:
    """Only the kinds, in order."""
    return [c.kind for c in changes]


class TestThreshold:
    def test_raises_repeats_and_clears(self) -> None:
        r = rule({"type": "threshold", "metric": "t", "op": ">", "value": 30})
        state: dict[str, Any] = {}
        assert kinds(run(r, state, [(1, 20), (2, 31), (3, 32), (4, 29)])) == [
            "raise",
            "raise",
            "clear",
        ]
        assert state["active"] is False

    def test_hysteresis_flapping_raises_once(self) -> None:
        r = rule({"type": "threshold", "metric": "t", "op": ">", "value": 30, "hysteresis": 2})
        state: dict[str, Any] = {}
        flapping = [(i, 30.5 if i % 2 else 29.5) for i in range(1, 41)]
        changes = run(r, state, flapping)
        # Raised once; every later excursion counts on the same alarm, none clears it.
        assert kinds(changes).count("clear") == 0
        assert changes[0].kind == "raise"
        assert state["active"] is True
        assert kinds(run(r, state, [(50, 27.9)])) == ["clear"]

    def test_without_hysteresis_the_same_values_flap(self) -> None:
        r = rule({"type": "threshold", "metric": "t", "op": ">", "value": 30})
        changes = run(r, {}, [(i, 30.5 if i % 2 else 29.5) for i in range(1, 41)])
        assert kinds(changes).count("clear") == 20

    def test_explicit_clear_condition(self) -> None:
        r = rule(
            {
                "type": "threshold",
                "metric": "t",
                "op": ">",
                "value": 30,
                "clear": {"op": "<", "value": 25},
            }
        )
        state: dict[str, Any] = {}
        assert kinds(run(r, state, [(1, 31), (2, 26), (3, 24)])) == ["raise", "clear"]


class TestForS:
    def cond(self) -> dict[str, Any]:
        return {"type": "threshold", "metric": "t", "op": ">", "value": 30, "for_s": 60}

    def test_raises_only_after_holding_for_s_in_reading_time(self) -> None:
        r = rule(self.cond())
        state: dict[str, Any] = {}
        assert run(r, state, [(0, 31), (30, 32), (59, 33)]) == []
        assert state["pending_ms"] == 0
        assert state["due_ms"] == 60_000
        assert kinds(run(r, state, [(60, 34)])) == ["raise"]
        assert "due_ms" not in state

    def test_a_dip_restarts_the_wait(self) -> None:
        r = rule(self.cond())
        state: dict[str, Any] = {}
        assert run(r, state, [(0, 31), (30, 29), (40, 31), (90, 31)]) == []
        assert state["pending_ms"] == 40_000

    def test_late_readings_are_ignored(self) -> None:
        r = rule(self.cond())
        state: dict[str, Any] = {}
        run(r, state, [(100, 20)])
        # Readings older than the state's newest: they must not start or complete a for_s.
        assert run(r, state, [(0, 31), (70, 31), (99, 31)]) == []
        assert "pending_ms" not in state

    def test_out_of_order_within_a_batch_after_raise_does_not_reraise_or_clear(self) -> None:
        r = rule(self.cond())
        state: dict[str, Any] = {}
        assert kinds(run(r, state, [(0, 31), (60, 31)])) == ["raise"]
        assert run(r, state, [(30, 10), (59, 10)]) == []
        assert state["active"] is True

    def test_late_data_never_clears_an_alarm_for_an_older_time(self) -> None:
        r = rule({"type": "threshold", "metric": "t", "op": ">", "value": 30})
        state: dict[str, Any] = {}
        run(r, state, [(10, 31)])
        assert run(r, state, [(5, 10)]) == []
        assert state["active"] is True


class TestAnomaly:
    def cond(self, **kw: Any) -> dict[str, Any]:
        return {"type": "anomaly", "metric": "t", "k": 3, "window": 50, "min_samples": 20, **kw}

    def test_warm_up_never_fires(self) -> None:
        r = rule(self.cond())
        state: dict[str, Any] = {}
        values = [(i, 20.0 + (i % 3) * 0.1) for i in range(19)] + [(19, 500.0)]
        assert run(r, state, values) == []  # the outlier is the 20th value: still warming up

    def test_fires_after_warm_up_and_clears(self) -> None:
        r = rule(self.cond())
        state: dict[str, Any] = {}
        run(r, state, [(i, 20.0 + (i % 3) * 0.1) for i in range(30)])
        assert kinds(run(r, state, [(30, 50.0)])) == ["raise"]
        assert kinds(run(r, state, [(31, 20.1)])) == ["clear"]

    def test_state_is_constant_size(self) -> None:
        r = rule(self.cond())
        state: dict[str, Any] = {}
        run(r, state, [(i, float(i % 7)) for i in range(5000)])
        assert len(state["anomaly"]) == 3
        assert state["anomaly"][0] == 5000


class TestRate:
    def test_more_than_n_readings_in_window(self) -> None:
        r = rule({"type": "rate", "window_s": 10, "n": 3})
        state: dict[str, Any] = {}
        assert kinds(run(r, state, [(0, 0), (1, 0), (2, 0), (3, 0)])) == ["raise"]
        assert kinds(run(r, state, [(20, 0)])) == ["clear"]
        assert len(state["rate"]) <= 4

    def test_change_of_more_than_delta(self) -> None:
        r = rule({"type": "rate", "window_s": 60, "delta": 5, "metric": "t"})
        state: dict[str, Any] = {}
        assert run(r, state, [(0, 20), (10, 23), (20, 24.9)]) == []
        assert kinds(run(r, state, [(30, 26)])) == ["raise"]
        # 100 s later the window holds only recent values again.
        assert kinds(run(r, state, [(130, 26), (131, 26.5)])) == ["clear"]
