"""Reading what the program gives CloudWatch, as the mocks recorded it: the dashboard's widgets, their series and
metric-math expressions, the alarms' metrics — and evaluating metric math on one data point."""

from __future__ import annotations

import ast
import json
import operator
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tests.infra.stack import Deployment

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"


def widgets(deployment: Deployment) -> dict[str, dict[str, Any]]:
    """The dashboard's widgets by title."""
    (dashboard,) = deployment.of_type(DASHBOARD)
    listed = json.loads(dashboard.inputs["dashboardBody"])["widgets"]
    by_title = {w["properties"]["title"]: w for w in listed}
    assert len(by_title) == len(listed)  # a title says which graph it is: no two alike
    return by_title


@dataclass(frozen=True)
class Series:
    namespace: str
    name: str
    stat: str
    dimensions: dict[str, Any]
    options: dict[str, Any]


def series(properties: Mapping[str, Any]) -> list[Series]:
    """A metric widget's metrics (not its expressions), each with the statistic it is drawn with (its own
    override, else the widget's)."""
    drawn = []
    for metric in properties["metrics"]:
        if isinstance(metric[0], dict):
            continue
        options = metric[-1] if isinstance(metric[-1], dict) else {}
        names = metric[:-1] if options else metric
        dimensions = dict(zip(names[2::2], names[3::2], strict=True))
        drawn.append(Series(names[0], names[1], options.get("stat", properties["stat"]), dimensions, options))
    return drawn


def expressions(properties: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {m[0]["id"]: m[0] for m in properties.get("metrics", []) if isinstance(m[0], dict)}


def alarm_queries(alarm: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], str]:
    """A metric-math alarm's metrics by id, and the expression it watches."""
    queries = alarm["metricQueries"]
    metrics = {q["id"]: q["metric"] for q in queries if "metric" in q}
    [watched] = [q["expression"] for q in queries if q.get("returnData")]
    return metrics, watched


def chatops_metrics_read(deployment: Deployment) -> Iterator[tuple[str, str]]:
    """(where, metric name) for every ``ChatOps`` metric the dashboard draws or an alarm watches."""
    for title, widget in widgets(deployment).items():
        if widget["type"] == "metric":
            for drawn in series(widget["properties"]):
                if drawn.namespace == "ChatOps":
                    yield f"dashboard: {title}", drawn.name
    for alarm in deployment.of_type(ALARM):
        if alarm.inputs.get("namespace") == "ChatOps":
            yield f"alarm {alarm.inputs['name']}", alarm.inputs["metricName"]
        for query in alarm.inputs.get("metricQueries", []):
            if query.get("metric", {}).get("namespace") == "ChatOps":
                yield f"alarm {alarm.inputs['name']}", query["metric"]["metricName"]


def evaluate(expression: str, values: Mapping[str, float]) -> float:
    """Metric math on one data point: ids, numbers, ``+ - * /``, ``FILL(id, 0)``, ``MAX([…])``, ``IF(a >= b, x, y)``
    (CloudWatch's syntax is Python's for these). A missing id is no data: ``FILL`` makes it 0, else it fails."""

    def value(node: ast.expr) -> float:
        match node:
            case ast.Constant(value=int() | float() as number):
                return float(number)
            case ast.Name(id=name):
                return values[name]
            case ast.Call(func=ast.Name(id="FILL"), args=[ast.Name(id=name), ast.Constant(value=0)]):
                return values.get(name, 0.0)
            case ast.Call(func=ast.Name(id="MAX"), args=[ast.List(elts=items)]):
                return max(value(item) for item in items)
            case ast.Call(func=ast.Name(id="IF"), args=[condition, then, otherwise]):
                return value(then) if holds(condition) else value(otherwise)
            case ast.BinOp(left=left, op=op, right=right):
                operate: dict[type[ast.operator], Callable[[float, float], float]] = {
                    ast.Add: operator.add,
                    ast.Sub: operator.sub,
                    ast.Mult: operator.mul,
                    ast.Div: operator.truediv,
                }
                return operate[type(op)](value(left), value(right))
        raise AssertionError(f"not metric math this test reads: {ast.dump(node)}")

    def holds(node: ast.expr) -> bool:
        match node:
            case ast.Compare(left=left, ops=[ast.GtE()], comparators=[right]):
                return value(left) >= value(right)
        raise AssertionError(f"not a condition this test reads: {ast.dump(node)}")

    return value(ast.parse(expression, mode="eval").body)


def ids_in(expression: str) -> set[str]:
    """The metric ids an expression reads (function names aside)."""
    tree = ast.parse(expression, mode="eval")
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - called
