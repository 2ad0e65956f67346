"""The alarms and the dashboard, as each stack file configures them (mocks): what they watch, the design's two
rates with their expected ranges, the tables' health, and metric math that computes what it says."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from infra.roster import QUEUES, REQUESTED_QUEUES
from tests.infra.cloudwatch import (
    ALARM,
    alarm_queries,
    evaluate,
    expressions,
    ids_in,
    series,
    widgets,
)
from tests.infra.stack import Deployment, Resource, stack_config
from workers.flows import build, freeze, insights, runlock

FUNCTION = "aws:lambda/function:Function"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
TABLES = ("locks", "idempotency", "history")


def _functions(deployment: Deployment) -> dict[str, Resource]:
    prefix = f"chatops-{deployment.stack}-"
    return {str(f.inputs["name"]).removeprefix(prefix): f for f in deployment.of_type(FUNCTION)}


def _tables(deployment: Deployment) -> dict[str, Resource]:
    return {t.name: t for t in deployment.of_type("aws:dynamodb/table:Table")}


def _alarms(deployment: Deployment) -> dict[str, Mapping[str, Any]]:
    prefix = f"chatops-{deployment.stack}-"
    return {str(a.inputs["name"]).removeprefix(prefix): a.inputs for a in deployment.of_type(ALARM)}


def _widget_with(deployment: Deployment, expression_id: str) -> dict[str, Any]:
    properties: dict[str, Any]
    [properties] = [
        w["properties"] for w in widgets(deployment).values() if expression_id in expressions(w["properties"])
    ]
    return properties


# -------------------------------------------------------------------------------------------------- alarms
def test_alarms_cover_every_dlq_every_function_dispatch_failures_the_rates_and_the_tables(
    deployment: Deployment,
) -> None:
    config = stack_config(deployment.stack)
    (topic,) = deployment.of_type("aws:sns/topic:Topic")
    (subscription,) = deployment.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert subscription.inputs == {"topic": topic["arn"], "protocol": "email", "endpoint": config["chatops:alarmEmail"]}
    alarms = [a.inputs for a in deployment.of_type(ALARM)]
    for alarm in alarms:
        assert alarm["alarmActions"] == [topic["arn"]] == alarm["okActions"]
        assert alarm["comparisonOperator"] == "GreaterThanThreshold"
        assert alarm["treatMissingData"] == "notBreaching"
    simple = [a for a in alarms if "metricName" in a]
    assert all(a["threshold"] == 0 for a in simple)
    # A DLQ the dead-letter worker empties is watched by what it receives; the others by what waits in them.
    watched_dlqs = {
        a["dimensions"]["QueueName"]: a["metricName"]
        for a in simple
        if a["metricName"] in {"ApproximateNumberOfMessagesVisible", "NumberOfMessagesReceived"}
    }
    assert watched_dlqs == {
        f"chatops-{deployment.stack}-{queue}-dlq": "NumberOfMessagesReceived"
        if queue in REQUESTED_QUEUES
        else "ApproximateNumberOfMessagesVisible"
        for queue in QUEUES
    }
    watched_functions = {a["dimensions"]["FunctionName"] for a in simple if a["metricName"] == "Errors"}
    assert watched_functions == {f.inputs["name"] for f in deployment.of_type(FUNCTION)}
    ours = {a["metricName"]: a for a in simple if a["namespace"] == "ChatOps"}
    assert set(ours) == {build.DISPATCH_FAILED_METRIC}  # an expired lock is judged by the rate, not one by one
    for alarm in ours.values():
        assert alarm["dimensions"] == {"service": "chatops"}  # Powertools' EMF dimension, or the alarm sees nothing
        assert alarm["statistic"] == "Sum"
    by_name = _alarms(deployment)
    rates_and_tables = {
        "acquisition-failure-rate",
        "expiration-rate",
        *(f"{table}-table-{what}" for table in TABLES for what in ("throttled", "system-errors")),
    }
    assert rates_and_tables <= set(by_name)
    assert len(alarms) == len(simple) + len(rates_and_tables)


def test_every_metric_math_reads_only_ids_it_defines_and_alarms_read_the_chatops_dimension(
    deployment: Deployment,
) -> None:
    for title, widget in widgets(deployment).items():
        if widget["type"] != "metric":
            continue
        properties = widget["properties"]
        ids = [s.options["id"] for s in series(properties) if "id" in s.options] + list(expressions(properties))
        assert len(ids) == len(set(ids)), title
        for expression in expressions(properties).values():
            assert ids_in(expression["expression"]) <= set(ids), (title, expression)
            assert expression["id"][0].islower()  # CloudWatch: an id starts with a lowercase letter
    for name, alarm in _alarms(deployment).items():
        if "metricQueries" not in alarm:
            continue
        read, watched = alarm_queries(alarm)
        assert ids_in(watched) == set(read), name
        for metric in read.values():
            assert metric["stat"] == "Sum" and metric["period"] == read[next(iter(read))]["period"]
            if metric["namespace"] == "ChatOps":
                assert metric["dimensions"] == {"service": "chatops"}


# --------------------------------------------------------------------------------------- the design's rates
def test_the_acquisition_failure_rate_counts_busy_and_queued_over_every_acquire_attempt(
    deployment: Deployment,
) -> None:
    properties = _widget_with(deployment, "acquisition_failure")
    hidden = {s.options["id"]: s.name for s in series(properties) if s.options.get("visible") is False}
    assert hidden == {"acquired": build.ACQUIRED_METRIC, "busy": build.BUSY_METRIC, "queued": build.QUEUED_METRIC}
    rate = expressions(properties)["acquisition_failure"]["expression"]
    assert evaluate(rate, {"acquired": 18, "busy": 1, "queued": 1}) == 10
    assert evaluate(rate, {"acquired": 19, "queued": 1}) == 5  # a queued request met a held lock: refused
    assert evaluate(rate, {"acquired": 4}) == 0
    assert (properties["stat"], properties["period"]) == ("Sum", 3600)
    assert properties["annotations"] == {"horizontal": [[{"label": "expected 5-10 %", "value": 5}, {"value": 10}]]}


def test_the_expiration_rate_is_expired_over_acquired_and_an_hour_of_expiries_alone_is_all_of_them(
    deployment: Deployment,
) -> None:
    properties = _widget_with(deployment, "expiration")
    hidden = {s.options["id"]: s.name for s in series(properties) if s.options.get("visible") is False}
    assert hidden == {"acquired": build.ACQUIRED_METRIC, "expired": runlock.EXPIRED_METRIC}
    rate = expressions(properties)["expiration"]["expression"]
    assert evaluate(rate, {"acquired": 200, "expired": 1}) == 0.5
    assert evaluate(rate, {"expired": 2}) == 100  # taken last hour, expired in this one: never 0 / 0
    assert evaluate(rate, {"acquired": 3}) == 0
    assert properties["period"] == 3600
    assert properties["annotations"] == {"horizontal": [{"label": "expected under 1 %", "value": 1, "fill": "below"}]}


@pytest.mark.parametrize(
    ("alarm", "counts", "fires"),
    [
        ("acquisition-failure-rate", {"acquired": 18, "busy": 1, "queued": 1}, False),  # 10 %: the upper bound
        ("acquisition-failure-rate", {"acquired": 17, "busy": 2, "queued": 1}, True),  # 15 % of 20
        ("acquisition-failure-rate", {"acquired": 10, "busy": 9}, False),  # 47 % of 19: too few to judge
        ("acquisition-failure-rate", {"acquired": 20}, False),  # below the range is no fault
        ("expiration-rate", {"acquired": 100, "expired": 1}, False),  # 1 %
        ("expiration-rate", {"acquired": 50, "expired": 1}, True),  # 2 %
        ("expiration-rate", {"expired": 1}, True),
    ],
)
def test_a_rate_alarms_only_above_its_upper_bound_over_an_hour(
    deployment: Deployment, alarm: str, counts: dict[str, float], fires: bool
) -> None:
    watched = _alarms(deployment)[alarm]
    read, expression = alarm_queries(watched)
    assert {metric["period"] for metric in read.values()} == {3600}
    drawn = _widget_with(deployment, alarm.removesuffix("-rate").replace("-", "_"))
    assert {id_: m["metricName"] for id_, m in read.items()} == {
        s.options["id"]: s.name for s in series(drawn) if "id" in s.options
    }, "the alarm reads what the graph draws"
    assert (evaluate(expression, counts) > watched["threshold"]) is fires


# ------------------------------------------------------------------------------------------- tables' health
def _granted(deployment: Deployment, table_arn: str) -> set[str]:
    """The DynamoDB operations some role may call on the table: what can fail or be throttled there."""
    operations = set()
    for policy in deployment.of_type("aws:iam/rolePolicy:RolePolicy"):
        for statement in json.loads(policy.inputs["policy"])["Statement"]:
            if table_arn in statement["Resource"]:
                operations |= {action.removeprefix("dynamodb:") for action in statement["Action"]}
    return operations


@pytest.mark.parametrize("key", TABLES)
def test_each_tables_capacity_throttles_and_errors_are_drawn_over_every_operation_it_serves(
    deployment: Deployment, key: str
) -> None:
    table = _tables(deployment)[key]
    name, operations = table.inputs["name"], _granted(deployment, table["arn"])
    drawn = [s for w in widgets(deployment).values() if w["type"] == "metric" for s in series(w["properties"])]
    on_table = {(s.name, s.dimensions.get("Operation")) for s in drawn if s.dimensions.get("TableName") == name}
    for metric in ("ConsumedReadCapacityUnits", "ConsumedWriteCapacityUnits", "ReadThrottleEvents"):
        assert (metric, None) in on_table
    assert ("WriteThrottleEvents", None) in on_table
    for metric in ("ThrottledRequests", "SystemErrors"):
        assert {operation for m, operation in on_table if m == metric} == operations, metric
    assert [s.dimensions for s in drawn if s.name == "UserErrors"] == [{}]  # DynamoDB's: per account and region


@pytest.mark.parametrize("key", TABLES)
def test_each_table_alarms_on_any_throttle_and_any_system_error(deployment: Deployment, key: str) -> None:
    table = _tables(deployment)[key]
    name, operations = table.inputs["name"], _granted(deployment, table["arn"])
    alarms = _alarms(deployment)
    read, expression = alarm_queries(alarms[f"{key}-table-throttled"])
    assert {(m["metricName"], m["dimensions"]["TableName"]) for m in read.values()} == {
        ("ReadThrottleEvents", name),
        ("WriteThrottleEvents", name),
    }
    assert alarms[f"{key}-table-throttled"]["threshold"] == 0
    assert evaluate(expression, {"writes": 1}) > 0 and evaluate(expression, {}) == 0
    read, expression = alarm_queries(alarms[f"{key}-table-system-errors"])
    assert {m["dimensions"]["Operation"] for m in read.values()} == operations
    assert {m["metricName"] for m in read.values()} == {"SystemErrors"}
    assert all(evaluate(expression, {id_: 1}) == 1 for id_ in read)


# ------------------------------------------------------------------------------------- what /build stats tells
def test_the_dashboard_graphs_what_build_stats_tells_and_the_services_health(deployment: Deployment) -> None:
    shown = widgets(deployment)
    metric_widgets = [w["properties"] for w in shown.values() if w["type"] == "metric"]
    drawn = {(s.namespace, s.name, s.stat) for p in metric_widgets for s in series(p)}
    for metric in (
        build.ACQUIRED_METRIC,
        build.QUEUED_METRIC,
        build.BUSY_METRIC,
        freeze.FROZEN_METRIC,
        runlock.RUN_COMPLETED_METRIC,
        runlock.RUN_FAILED_METRIC,
        runlock.EXPIRED_METRIC,
        build.DISPATCH_FAILED_METRIC,
    ):
        assert ("ChatOps", metric, "Sum") in drawn, metric
    assert ("ChatOps", runlock.LOCK_DURATION_METRIC, "Average") in drawn
    assert ("ChatOps", runlock.LOCK_DURATION_METRIC, "p95") in drawn
    assert build.LOCK_DURATION_METRIC == runlock.LOCK_DURATION_METRIC
    assert ("AWS/Lambda", "ConcurrentExecutions", "Maximum") in drawn
    for properties in metric_widgets:
        for metric in properties["metrics"]:
            if metric[0] == "ChatOps":  # Powertools' EMF dimension, or the graph sees nothing
                assert metric[2:4] == ["service", "chatops"], metric
    assert all(w["properties"]["region"] == stack_config(deployment.stack)["aws:region"] for w in shown.values())


def test_the_dashboard_grid_has_no_overlaps(deployment: Deployment) -> None:
    cells: set[tuple[int, int]] = set()
    for widget in widgets(deployment).values():
        assert widget["x"] + widget["width"] <= 24
        area = {
            (x, y)
            for x in range(widget["x"], widget["x"] + widget["width"])
            for y in range(widget["y"], widget["y"] + widget["height"])
        }
        assert not cells & area, widget["properties"]["title"]
        cells |= area


def test_the_failure_rate_is_failed_runs_over_completed_and_failed_in_percent(deployment: Deployment) -> None:
    properties = _widget_with(deployment, "rate")
    hidden = {s.options["id"]: s.name for s in series(properties) if s.options.get("visible") is False}
    assert hidden == {"completed": runlock.RUN_COMPLETED_METRIC, "failed": runlock.RUN_FAILED_METRIC}
    assert properties["stat"] == "Sum"
    rate = expressions(properties)["rate"]
    assert rate.get("visible", True)
    assert evaluate(rate["expression"], {"completed": 3, "failed": 1}) == 25
    assert evaluate(rate["expression"], {"failed": 2}) == 100  # a period with no completed run
    assert evaluate(rate["expression"], {"completed": 4}) == 0
    assert properties["yAxis"]["left"] == {"min": 0, "max": 100}


def test_refusals_are_busy_and_frozen_and_their_sum(deployment: Deployment) -> None:
    properties = _widget_with(deployment, "refused")
    ids = {s.options["id"]: s.name for s in series(properties) if "id" in s.options}
    assert ids == {"busy": build.BUSY_METRIC, "frozen": freeze.FROZEN_METRIC}
    assert evaluate(expressions(properties)["refused"]["expression"], {"busy": 2, "frozen": 1}) == 3
    assert evaluate(expressions(properties)["refused"]["expression"], {"frozen": 1}) == 1


def test_the_busiest_keys_and_hours_are_counted_from_the_build_workers_lock_acquired_lines(
    deployment: Deployment,
) -> None:
    build_function = _functions(deployment)["build"].inputs["name"]
    log_group = f"/aws/lambda/{build_function}"
    assert log_group in {g.inputs["name"] for g in deployment.of_type(LOG_GROUP)}
    logs = {w["properties"]["title"]: w["properties"] for w in widgets(deployment).values() if w["type"] == "log"}
    assert len(logs) == 2
    for properties in logs.values():
        assert properties["view"] == "table"
        assert properties["region"] == stack_config(deployment.stack)["aws:region"]
        commands = [command.strip() for command in properties["query"].split("|")]
        assert commands[0] == f"SOURCE '{log_group}'"
        assert commands[1] == 'filter message = "lock acquired"'  # workers/flows/build.py, under lock_key
    [keys] = [p["query"] for title, p in logs.items() if "keys" in title]
    assert [c.strip() for c in keys.split("|")][2:] == [
        "stats count(*) as acquisitions by lock_key",
        "sort acquisitions desc",
        f"limit {insights.BUSIEST_SHOWN}",
    ]
    [hours] = [p["query"] for title, p in logs.items() if "hours" in title and "UTC" in title]
    assert [c.strip() for c in hours.split("|")][2:] == [
        "fields floor((toMillis(@timestamp) % 86400000) / 3600000) as hour_utc",
        "stats count(*) as acquisitions by hour_utc",
        "sort acquisitions desc",
    ]
