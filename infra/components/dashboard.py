"""The dashboard's widgets, as the JSON CloudWatch takes (``DashboardBody``), from top to bottom:

- what ``/build stats`` tells from the history, from the workers' metrics instead: acquisitions and the requests
  queued behind a holder; refusals (lock busy, environment frozen);
- the reference design's two rates with their expected ranges drawn (:data:`infra.metrics.RATES`);
- runs ended COMPLETED / FAILED and the run failure rate; lock duration; expired locks and failed dispatches;
- the busiest keys and hours (Logs Insights over the build worker's ``lock acquired`` lines);
- the tables' health: consumed capacity, throttles, system and user errors; concurrent executions per function.

Two widgets a row, 12 columns each, 6 high.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import pulumi

from infra import metrics
from infra.metrics import Rate

PERIOD: Final = 300
BUILD_WORKER: Final = "build"
"""The worker that takes the locks: its log group holds the ``lock acquired`` lines the busiest keys and hours
are counted from."""
ACQUIRED_LOG_MESSAGE: Final = "lock acquired"
BUSIEST_KEYS_SHOWN: Final = 5
"""As many keys as ``/build stats`` shows."""
FAILURE_RATE: Final = "100 * FILL(failed, 0) / (FILL(completed, 0) + FILL(failed, 0))"
"""Percent of the runs that ended FAILED; no point in a period without a run (0 / 0)."""
REFUSED: Final = "FILL(busy, 0) + FILL(frozen, 0)"
DYNAMODB: Final = "AWS/DynamoDB"


def chatops(metric: str, label: str, **options: Any) -> list[Any]:
    return [metrics.NAMESPACE, metric, "service", metrics.DIMENSIONS["service"], {"label": label, **options}]


def expression(text: str, label: str, id_: str, **options: Any) -> list[Any]:
    return [{"expression": text, "label": label, "id": id_, **options}]


def table_metric(metric: str, table: pulumi.Input[str], label: str, **options: Any) -> list[Any]:
    return [DYNAMODB, metric, "TableName", table, {"label": label, **options}]


def operation_metric(metric: str, table: pulumi.Input[str], operation: str, **options: Any) -> list[Any]:
    return [DYNAMODB, metric, "TableName", table, "Operation", operation, {"visible": False, **options}]


def rate_series(rate: Rate) -> list[list[Any]]:
    """The rate's counts (hidden) and the rate itself."""
    counts = [chatops(name, id_, id=id_, visible=False) for id_, name in rate.metrics.items()]
    return [*counts, expression(rate.expression, rate.title.split(":")[0], rate.id)]


def expected_range(rate: Rate) -> list[Any]:
    """Horizontal annotations: the design's range as a band (or, from 0, a line to stay under)."""
    low, high = rate.expected
    if low > 0:
        return [[{"label": f"expected {low:g}-{high:g} %", "value": low}, {"value": high}]]
    return [{"label": f"expected under {high:g} %", "value": high, "fill": "below"}]


@dataclass(frozen=True)
class Grid:
    """Places widgets of one region's metrics on the 24-column grid."""

    region: str

    def graph(
        self, x: int, y: int, title: str, stat: str, series: list[list[Any]], *, width: int = 12, **extra: Any
    ) -> dict[str, Any]:
        properties = {"title": title, "region": self.region, "stat": stat, "period": PERIOD, "view": "timeSeries"}
        return {
            "type": "metric",
            "x": x,
            "y": y,
            "width": width,
            "height": 6,
            "properties": {**properties, **extra, "metrics": series},
        }

    def logs(self, x: int, y: int, title: str, log_group: pulumi.Input[str], query: str) -> dict[str, Any]:
        source = pulumi.Output.concat("SOURCE '", log_group, "' | ", query)
        return {
            "type": "log",
            "x": x,
            "y": y,
            "width": 12,
            "height": 6,
            "properties": {"title": title, "region": self.region, "query": source, "view": "table"},
        }

    def rate(self, x: int, y: int, rate: Rate) -> dict[str, Any]:
        return self.graph(
            x,
            y,
            rate.title,
            "Sum",
            rate_series(rate),
            period=metrics.RATE_PERIOD,
            yAxis={"left": {"min": 0}},
            annotations={"horizontal": expected_range(rate)},
        )


def widgets(
    region: str, functions: Mapping[str, pulumi.Input[str]], tables: Mapping[str, pulumi.Input[str]]
) -> list[dict[str, Any]]:
    grid = Grid(region)
    graph, logs = grid.graph, grid.logs
    widgets = [
        graph(
            0,
            0,
            "Lock acquisitions, and requests queued behind the holder",
            "Sum",
            [chatops(metrics.ACQUIRED, "acquired (hand-offs included)"), chatops(metrics.QUEUED, "queued")],
        ),
        graph(
            12,
            0,
            "Refused requests: lock busy, environment frozen",
            "Sum",
            [
                chatops(metrics.BUSY, "refused: busy", id="busy"),
                chatops(metrics.FROZEN, "refused: frozen", id="frozen"),
                expression(REFUSED, "refused (busy or frozen)", "refused"),
            ],
        ),
        grid.rate(0, 6, metrics.ACQUISITION_FAILURE),
        grid.rate(12, 6, metrics.EXPIRATION),
        graph(
            0,
            12,
            "Runs ended: released COMPLETED / FAILED",
            "Sum",
            [chatops(metrics.RUN_COMPLETED, "completed"), chatops(metrics.RUN_FAILED, "failed")],
        ),
        graph(
            12,
            12,
            "Run failure rate (%): FAILED / (COMPLETED + FAILED)",
            "Sum",
            [
                chatops(metrics.RUN_COMPLETED, "completed", id="completed", visible=False),
                chatops(metrics.RUN_FAILED, "failed", id="failed", visible=False),
                expression(FAILURE_RATE, "failure rate (%)", "rate"),
            ],
            yAxis={"left": {"min": 0, "max": 100}},
        ),
        graph(
            0,
            18,
            "Lock duration (seconds): average and p95",
            "Average",
            [chatops(metrics.LOCK_DURATION, "average"), chatops(metrics.LOCK_DURATION, "p95", stat="p95")],
        ),
        graph(
            12,
            18,
            "Expired locks and failed dispatches",
            "Sum",
            [chatops(metrics.LOCK_EXPIRED, "expired"), chatops(metrics.DISPATCH_FAILED, "dispatch failed")],
        ),
    ]
    build_function = functions.get(BUILD_WORKER)
    if build_function is not None:
        log_group = pulumi.Output.concat("/aws/lambda/", build_function)
        acquired = f'filter message = "{ACQUIRED_LOG_MESSAGE}"'
        widgets += [
            logs(
                0,
                24,
                f"Busiest keys (top {BUSIEST_KEYS_SHOWN}, by acquisitions)",
                log_group,
                f"{acquired} | stats count(*) as acquisitions by lock_key | sort acquisitions desc"
                f" | limit {BUSIEST_KEYS_SHOWN}",
            ),
            logs(
                12,
                24,
                "Busiest hours of the day (UTC, by acquisitions)",
                log_group,
                f"{acquired} | fields floor((toMillis(@timestamp) % 86400000) / 3600000) as hour_utc"
                " | stats count(*) as acquisitions by hour_utc | sort acquisitions desc",
            ),
        ]
    widgets += table_health(grid, tables)
    concurrency = [
        ["AWS/Lambda", "ConcurrentExecutions", "FunctionName", function_name, {"label": worker}]
        for worker, function_name in sorted(functions.items())
    ]
    widgets.append(graph(12, 36, "Concurrent requests (executions per function)", "Maximum", concurrency))
    return widgets


def table_health(grid: Grid, tables: Mapping[str, pulumi.Input[str]]) -> list[dict[str, Any]]:
    """Consumed capacity, throttles and errors of each table. ``ThrottledRequests`` and ``SystemErrors`` exist per
    table and operation only: each table's operations (hidden) are summed into one line. ``UserErrors`` (HTTP 400s
    other than throttling and a failed condition — a lost race is neither) is DynamoDB's, per account and region."""
    consumed: list[list[Any]] = []
    throttled: list[list[Any]] = []
    errors: list[list[Any]] = []
    for key, table in sorted(tables.items()):
        operations = metrics.TABLE_OPERATIONS[key]
        consumed += [
            table_metric("ConsumedReadCapacityUnits", table, f"{key}: read"),
            table_metric("ConsumedWriteCapacityUnits", table, f"{key}: write"),
        ]
        throttled += [
            table_metric("ReadThrottleEvents", table, f"{key}: read throttle events"),
            table_metric("WriteThrottleEvents", table, f"{key}: write throttle events"),
        ]
        throttled += [
            operation_metric("ThrottledRequests", table, operation, id=f"{key}_throttled_{operation.lower()}")
            for operation in operations
        ]
        sum_of = " + ".join(f"FILL({key}_throttled_{operation.lower()}, 0)" for operation in operations)
        throttled.append(expression(sum_of, f"{key}: throttled requests", f"{key}_throttled"))
        errors += [
            operation_metric("SystemErrors", table, operation, id=f"{key}_errors_{operation.lower()}")
            for operation in operations
        ]
        sum_of = " + ".join(f"FILL({key}_errors_{operation.lower()}, 0)" for operation in operations)
        errors.append(expression(sum_of, f"{key}: system errors (HTTP 500)", f"{key}_errors"))
    errors.append([DYNAMODB, "UserErrors", {"label": "user errors (HTTP 400), every table of the account"}])
    return [
        grid.graph(0, 30, "DynamoDB consumed capacity (units), per table", "Sum", consumed),
        grid.graph(12, 30, "DynamoDB throttles, per table", "Sum", throttled),
        grid.graph(0, 36, "DynamoDB system and user errors", "Sum", errors),
    ]
