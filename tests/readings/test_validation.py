"""Ingest body checks: what rejects the whole request, what rejects one reading."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.catalog.telemetry import TelemetrySchema
from app.readings.exceptions import MalformedReadings, ReadingsInvalid
from app.readings.validation import CheckedBatch, Rules, check_batch, parse_json

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SCHEMA = TelemetrySchema.model_validate(
    {
        "metrics": [
            {"name": "temperature", "min": -40, "max": 85},
            {"name": "door", "type": "boolean"},
            {"name": "mode", "type": "string"},
        ],
        "allow_unknown": False,
    }
)


def check(payload: Any, *, schema: TelemetrySchema = SCHEMA, max_batch: int = 10) -> CheckedBatch:
    rules = Rules.of(
        device_id="d" * 24,
        product_id="p" * 24,
        telemetry=schema,
        now=NOW,
        max_future_skew=timedelta(minutes=5),
        retention=timedelta(days=30),
    )
    return check_batch(payload, rules=rules, max_batch=max_batch)


def errors_of(payload: Any, **kwargs: Any) -> list[dict[str, Any]]:
    with pytest.raises(ReadingsInvalid) as info:
        check(payload, **kwargs)
    return info.value.errors


class TestJson:
    @pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
    def test_non_finite_literals_are_not_json(self, literal: str) -> None:
        body = b'{"metrics": {"temperature": ' + literal.encode() + b"}}"
        with pytest.raises(MalformedReadings):
            parse_json(body)

    def test_overflowing_number_is_rejected(self) -> None:
        errors = errors_of(parse_json(b'{"metrics": {"temperature": 1e999}}'))
        assert errors[0]["type"] == "finite_number"


class TestWholeRequestRejected:
    def test_non_numeric_value_for_numeric_metric_names_index(self) -> None:
        batch = {
            "readings": [
                {"metrics": {"temperature": 1}},
                {"metrics": {"temperature": "hot"}},
            ]
        }
        [error] = errors_of(batch)
        assert error["index"] == 1
        assert error["loc"] == ["body", "readings", 1, "metrics", "temperature"]

    @pytest.mark.parametrize("metrics", [{}, None, [], "x"])
    def test_empty_or_missing_metrics(self, metrics: Any) -> None:
        [error] = errors_of({"readings": [{"metrics": metrics}]})
        assert error["index"] == 0
        assert error["type"] == "metrics_empty"

    def test_batch_over_the_cap(self) -> None:
        [error] = errors_of({"readings": [{"metrics": {"temperature": 1}}] * 11})
        assert error["type"] == "too_long"

    def test_empty_batch(self) -> None:
        assert errors_of({"readings": []})[0]["type"] == "list_empty"

    @pytest.mark.parametrize(
        "ts", ["2026-03-01T11:00:00", "2026-03-01", "yesterday", 1772366400, "2026-13-01T00:00Z"]
    )
    def test_time_stamp_without_zone_or_unparseable(self, ts: Any) -> None:
        [error] = errors_of(
            {
                "readings": [
                    {"metrics": {"temperature": 1}},
                    {"ts": ts, "metrics": {"temperature": 1}},
                ]
            }
        )
        assert (error["index"], error["loc"][-1]) == (1, "ts")

    def test_time_stamp_too_far_in_the_future(self) -> None:
        future = (NOW + timedelta(minutes=6)).isoformat()
        [error] = errors_of({"ts": future, "metrics": {"temperature": 1}})
        assert error["type"] == "datetime_future"
        assert error["index"] == 0

    @pytest.mark.parametrize("value", [None, [1], {"a": 1}, "x" * 300])
    def test_values_that_are_not_scalars(self, value: Any) -> None:
        schema = TelemetrySchema()
        assert errors_of({"metrics": {"free": value}}, schema=schema)[0]["type"] == "value_type"

    def test_bool_is_not_a_number(self) -> None:
        assert errors_of({"metrics": {"temperature": True}})[0]["type"] == "value_type"

    def test_unknown_fields_are_refused(self) -> None:
        assert errors_of({"timestamp": "x", "metrics": {"temperature": 1}})[0]["type"] == (
            "extra_forbidden"
        )

    def test_every_offending_index_is_listed(self) -> None:
        batch = {"readings": [{"metrics": {}}, {"metrics": {"temperature": 1}}, {"metrics": {}}]}
        assert [e["index"] for e in errors_of(batch)] == [0, 2]


class TestPerReadingRejections:
    def test_unknown_metric_rejects_only_that_reading(self) -> None:
        batch = check({"readings": [{"metrics": {"temperature": 1}}, {"metrics": {"co2": 400}}]})
        assert len(batch.docs) == 1
        assert [(r.index, r.reason) for r in batch.rejected] == [(1, "unknown-metric")]

    def test_all_rejected_answers_422(self) -> None:
        [error] = errors_of({"metrics": {"co2": 400}})
        assert error["type"] == "unknown-metric"

    def test_reading_older_than_retention(self) -> None:
        old = (NOW - timedelta(days=31)).isoformat()
        batch = check(
            {
                "readings": [
                    {"ts": old, "metrics": {"temperature": 1}},
                    {"metrics": {"temperature": 2}},
                ]
            }
        )
        assert [(r.index, r.reason) for r in batch.rejected] == [(0, "too-old")]


class TestStoredDocuments:
    def test_out_of_range_is_stored_as_suspect(self) -> None:
        [doc] = check({"metrics": {"temperature": 120}}).docs
        assert doc["quality"] == "suspect"
        assert doc["suspect"] == ["temperature"]
        assert doc["m"] == {"temperature": 120.0}

    def test_types_per_schema_and_server_time(self) -> None:
        [doc] = check({"metrics": {"temperature": 20, "door": True, "mode": "eco"}}).docs
        assert doc["ts"] == NOW
        assert doc["m"] == {"temperature": 20.0, "door": True, "mode": "eco"}
        assert "quality" not in doc

    def test_offsets_are_converted_to_utc_milliseconds(self) -> None:
        [doc] = check(
            {"ts": "2026-03-01T13:00:00.123456+01:00", "metrics": {"temperature": 1}}
        ).docs
        assert doc["ts"] == datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)

    def test_dotted_metric_names_are_stored_with_colons(self) -> None:
        [doc] = check({"metrics": {"env.temp": 1}}, schema=TelemetrySchema()).docs
        assert doc["m"] == {"env:temp": 1.0}

    def test_json_numbers_round_trip(self) -> None:
        payload = parse_json(json.dumps({"metrics": {"temperature": 21.5}}).encode())
        assert check(payload).docs[0]["m"]["temperature"] == 21.5
