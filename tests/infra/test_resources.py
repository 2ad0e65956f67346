"""Every resource property the design asks for, on the program as each stack file configures it (mocks)."""

from __future__ import annotations

import ast
import json
import operator
from collections.abc import Callable, Mapping
from typing import Any

from infra.components.queues import VISIBILITY_FACTOR
from infra.roster import QUEUES, REQUESTED_QUEUES, WORKERS, consumer_of, dead_letter_consumer_of
from tests.infra.conftest import Deploy
from tests.infra.stack import ACCOUNT_ID, Deployment, Resource, stack_config
from workers.flows import build, freeze, insights, runlock

TABLE = "aws:dynamodb/table:Table"
QUEUE = "aws:sqs/queue:Queue"
FUNCTION = "aws:lambda/function:Function"
MAPPING = "aws:lambda/eventSourceMapping:EventSourceMapping"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"


def _functions(deployment: Deployment) -> dict[str, Resource]:
    prefix = f"chatops-{deployment.stack}-"
    return {str(f.inputs["name"]).removeprefix(prefix): f for f in deployment.of_type(FUNCTION)}


def _queues_by_arn(deployment: Deployment) -> dict[str, Resource]:
    return {str(q["arn"]): q for q in deployment.of_type(QUEUE)}


# -------------------------------------------------------------------------------------------------- tables
def test_the_lock_table_is_keyed_by_lock_key_on_demand_with_ttl_recovery_encryption_and_protection(
    deployment: Deployment,
) -> None:
    table = deployment.one(TABLE, "locks").inputs
    assert table["name"] == stack_config(deployment.stack)["chatops:lockTableName"]
    assert table["hashKey"] == "lockKey"
    assert table["attributes"] == [{"name": "lockKey", "type": "S"}]
    assert "rangeKey" not in table
    assert table["billingMode"] == "PAY_PER_REQUEST"
    assert table["ttl"] == {"attributeName": "ttl", "enabled": True}
    assert table["pointInTimeRecovery"] == {"enabled": True}
    assert table["serverSideEncryption"] == {"enabled": True}
    assert table["deletionProtectionEnabled"] is True
    assert (table["streamEnabled"], table["streamViewType"]) == (True, "NEW_AND_OLD_IMAGES")


def test_the_history_table_keeps_events_by_lock_key_and_time_for_30_days_by_ttl(deployment: Deployment) -> None:
    table = deployment.one(TABLE, "history").inputs
    assert table["name"] == f"chatops-{deployment.stack}-history"
    assert (table["hashKey"], table["rangeKey"]) == ("lockKey", "at")
    assert table["attributes"] == [{"name": "lockKey", "type": "S"}, {"name": "at", "type": "S"}]
    assert table["billingMode"] == "PAY_PER_REQUEST"
    assert table["ttl"] == {"attributeName": "ttl", "enabled": True}
    assert table["serverSideEncryption"] == {"enabled": True}


def test_the_lock_tables_stream_feeds_the_history_writer_alone(deployment: Deployment) -> None:
    locks = deployment.one(TABLE, "locks")
    functions = {str(f["arn"]): f for f in deployment.of_type(FUNCTION)}
    streamed = [m for m in deployment.of_type(MAPPING) if m.inputs["eventSourceArn"] == locks["streamArn"]]
    assert [functions[m.inputs["functionName"]].inputs["handler"] for m in streamed] == [
        "workers.handlers.history.handler"
    ]
    (mapping,) = streamed
    assert mapping.inputs["startingPosition"] == "TRIM_HORIZON"
    assert mapping.inputs["bisectBatchOnFunctionError"] is True


def test_the_idempotency_table_is_keyed_by_id_with_ttl_on_expiration(deployment: Deployment) -> None:
    table = deployment.one(TABLE, "idempotency").inputs
    assert table["hashKey"] == "id"
    assert table["attributes"] == [{"name": "id", "type": "S"}]
    assert table["billingMode"] == "PAY_PER_REQUEST"
    assert table["ttl"] == {"attributeName": "expiration", "enabled": True}
    assert table["serverSideEncryption"] == {"enabled": True}


# -------------------------------------------------------------------------------------------------- queues
def test_every_queue_has_an_encrypted_dlq_with_max_receive_count(deployment: Deployment) -> None:
    by_arn = _queues_by_arn(deployment)
    receives = stack_config(deployment.stack).get("chatops:maxReceiveCount", 5)
    for queue in QUEUES:
        main = deployment.one(QUEUE, queue)
        redrive = json.loads(main.inputs["redrivePolicy"])
        dlq = by_arn[redrive["deadLetterTargetArn"]]
        assert dlq.inputs["name"] == f"{main.inputs['name']}-dlq"
        assert redrive["maxReceiveCount"] == receives
        assert 1 <= receives <= 1000
        assert main.inputs["sqsManagedSseEnabled"] is True
        assert dlq.inputs["sqsManagedSseEnabled"] is True
        assert dlq.inputs["messageRetentionSeconds"] == 14 * 24 * 3600
        allow = deployment.one("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy", f"{queue}-dlq-sources").inputs
        assert allow["queueUrl"] == dlq["url"]
        assert json.loads(allow["redriveAllowPolicy"]) == {
            "redrivePermission": "byQueue",
            "sourceQueueArns": [main["arn"]],
        }


def test_visibility_is_at_least_six_times_the_consuming_functions_timeout_for_every_worker(
    deployment: Deployment,
) -> None:
    functions = {str(f["arn"]): f for f in deployment.of_type(FUNCTION)}
    by_arn = _queues_by_arn(deployment)
    mappings = [m for m in deployment.of_type(MAPPING) if m.inputs["eventSourceArn"] in by_arn]  # not the stream's
    assert {by_arn[m.inputs["eventSourceArn"]].inputs["name"] for m in mappings} == {
        f"chatops-{deployment.stack}-{queue}" for queue in QUEUES
    } | {f"chatops-{deployment.stack}-{queue}-dlq" for queue in REQUESTED_QUEUES}
    for mapping in mappings:
        queue = by_arn[mapping.inputs["eventSourceArn"]]
        function = functions[mapping.inputs["functionName"]]
        # AWS's guidance for Lambda event sources; the reference design's 4x is not enough.
        assert queue.inputs["visibilityTimeoutSeconds"] >= 6 * function.inputs["timeout"], queue.name
        assert queue.inputs["visibilityTimeoutSeconds"] == VISIBILITY_FACTOR * function.inputs["timeout"]


def test_each_queue_feeds_its_one_worker_with_partial_batch_responses(deployment: Deployment) -> None:
    functions = {str(f["arn"]): f for f in deployment.of_type(FUNCTION)}
    by_arn = _queues_by_arn(deployment)
    for mapping in deployment.of_type(MAPPING):
        if "/stream/" in mapping.inputs["eventSourceArn"]:
            continue  # the lock table's stream: the history writer's, above
        assert mapping.inputs["functionResponseTypes"] == ["ReportBatchItemFailures"]
        assert 1 <= mapping.inputs["batchSize"] <= 10
        queue = by_arn[mapping.inputs["eventSourceArn"]].name
        consumer = consumer_of(queue) if not queue.endswith("-dlq") else dead_letter_consumer_of(queue[: -len("-dlq")])
        assert consumer is not None, queue
        assert functions[mapping.inputs["functionName"]].inputs["handler"] == consumer.handler


def test_the_command_queues_dlqs_feed_the_dead_letter_worker_and_the_github_dlq_waits_for_a_person(
    deployment: Deployment,
) -> None:
    functions = {str(f["arn"]): f for f in deployment.of_type(FUNCTION)}
    by_arn = _queues_by_arn(deployment)
    fed = {
        by_arn[m.inputs["eventSourceArn"]].name: functions[m.inputs["functionName"]].inputs["handler"]
        for m in deployment.of_type(MAPPING)
        if m.inputs["eventSourceArn"] in by_arn and by_arn[m.inputs["eventSourceArn"]].name.endswith("-dlq")
    }
    assert fed == {
        f"{queue}-dlq": "workers.handlers.deadletter.handler" for queue in ("build", "deploy", "status", "echo")
    }
    github_dlq = deployment.one(QUEUE, "github-dlq")
    assert "visibilityTimeoutSeconds" not in github_dlq.inputs  # nobody consumes it: SQS's default


# ----------------------------------------------------------------------------------------------- functions
def test_every_worker_is_a_python_function_with_its_handler_and_timeout(deployment: Deployment) -> None:
    functions = _functions(deployment)
    assert set(functions) == {worker.name for worker in WORKERS}
    for worker in WORKERS:
        function = functions[worker.name].inputs
        assert function["runtime"] in {"python3.12", "python3.13"}
        assert function["handler"] == worker.handler
        assert function["timeout"] == worker.timeout
        if worker.consumes or worker.schedule:
            assert function["timeout"] == 45, worker.name  # the reference design's worker timeout
    assert functions["router"].inputs["timeout"] <= 15  # Slack waits 3 s; the router only enqueues


def test_every_function_has_its_own_log_group_with_retention(deployment: Deployment) -> None:
    retention = stack_config(deployment.stack).get("chatops:logRetentionDays", 30)
    groups = {g.inputs["name"]: g.inputs for g in deployment.of_type(LOG_GROUP)}
    for function in deployment.of_type(FUNCTION):
        group = groups[f"/aws/lambda/{function.inputs['name']}"]
        assert group["retentionInDays"] == retention


def test_every_function_gets_the_rollback_flag_and_only_the_variables_its_row_names(deployment: Deployment) -> None:
    config = stack_config(deployment.stack)
    flag = "true" if config.get("chatops:enableDistributedLock", True) else "false"
    functions = _functions(deployment)
    for worker in WORKERS:
        variables = functions[worker.name].inputs["environment"]["variables"]
        assert variables["ENABLE_DISTRIBUTED_LOCK"] == flag
        assert variables["CHATOPS_CONFIG"] == "/var/task/chatops.toml"
        assert ("LOCK_TABLE_NAME" in variables) == bool(worker.lock_table)
        assert ("IDEMPOTENCY_TABLE_NAME" in variables) == worker.idempotency
        assert ("HISTORY_TABLE_NAME" in variables) == bool(worker.history_table)
        parameters = {name.removesuffix("_PARAM") for name in variables if name.endswith("_PARAM")}
        assert parameters == set(worker.secrets)
        for secret in worker.secrets:
            assert variables[f"{secret}_PARAM"] == config["chatops:ssmParameters"][secret]
        queue_urls = {name for name in variables if name.endswith("_QUEUE_URL")}
        assert queue_urls == {f"{queue.upper()}_QUEUE_URL" for queue in worker.sends_to}
    router = functions["router"].inputs["environment"]["variables"]
    assert router["BUILD_QUEUE_URL"].endswith(f"/{ACCOUNT_ID}/chatops-{deployment.stack}-build")
    assert functions["build"].inputs["environment"]["variables"]["LOCK_TABLE_NAME"] == config["chatops:lockTableName"]


def test_no_variable_holds_a_secret_value(deployment: Deployment) -> None:
    for function in deployment.of_type(FUNCTION):
        variables = function.inputs["environment"]["variables"]
        assert not {"SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN", "GITHUB_TOKEN", "GITHUB_WEBHOOK_SECRET"} & set(variables)


def test_the_rollback_flag_reaches_every_worker(deploy_stack: Deploy) -> None:
    rolled_back = deploy_stack("plt", enableDistributedLock=False)
    for function in rolled_back.of_type(FUNCTION):
        assert function.inputs["environment"]["variables"]["ENABLE_DISTRIBUTED_LOCK"] == "false"
    assert rolled_back.outputs["distributedLockEnabled"] is False


def test_the_powertools_layer_is_the_configured_version_for_the_region(deployment: Deployment) -> None:
    config = stack_config(deployment.stack)
    version = config.get("chatops:powertoolsLayerVersion")
    expected = (
        []
        if version is None
        else [
            f"arn:aws:lambda:{config['aws:region']}:017000801446:layer:"
            f"AWSLambdaPowertoolsPythonV3-python312-x86_64:{version}"
        ]
    )
    for function in deployment.of_type(FUNCTION):
        assert function.inputs.get("layers", []) == expected
        assert function.inputs["architectures"] == ["x86_64"]


def test_without_a_layer_version_the_functions_run_the_bundled_powertools(deploy_stack: Deploy) -> None:
    bundled = deploy_stack("plt", powertoolsLayerVersion=None)
    for function in bundled.of_type(FUNCTION):
        assert function.inputs.get("layers", []) == []


# ---------------------------------------------------------------------------------------- the ways in
def test_the_router_answers_https_through_a_public_function_url(deployment: Deployment) -> None:
    router = f"chatops-{deployment.stack}-router"
    (url,) = deployment.of_type("aws:lambda/functionUrl:FunctionUrl")
    assert url.inputs["functionName"] == router
    assert url.inputs["authorizationType"] == "NONE"  # Slack and GitHub sign requests; the router checks them
    permissions = [
        p.inputs for p in deployment.of_type("aws:lambda/permission:Permission") if p.inputs["function"] == router
    ]
    assert {
        "action": "lambda:InvokeFunctionUrl",
        "function": router,
        "principal": "*",
        "functionUrlAuthType": "NONE",
    } in permissions
    assert {
        "action": "lambda:InvokeFunction",
        "function": router,
        "principal": "*",
        "invokedViaFunctionUrl": True,
    } in permissions


def test_the_reaper_runs_every_minute_from_eventbridge_only(deployment: Deployment) -> None:
    reaper = f"chatops-{deployment.stack}-reaper"
    (rule,) = deployment.of_type("aws:cloudwatch/eventRule:EventRule")
    assert rule.inputs["scheduleExpression"] == "rate(1 minute)"
    (target,) = deployment.of_type("aws:cloudwatch/eventTarget:EventTarget")
    assert target.inputs["arn"] == _functions(deployment)["reaper"]["arn"]
    assert target.inputs["rule"] == rule.inputs["name"]
    (permission,) = [
        p for p in deployment.of_type("aws:lambda/permission:Permission") if p.inputs["function"] == reaper
    ]
    assert permission.inputs["principal"] == "events.amazonaws.com"
    assert permission.inputs["sourceArn"] == rule["arn"]


# ---------------------------------------------------------------------------------------------- monitoring
def test_alarms_cover_every_dlq_every_function_lock_expiry_and_dispatch_failures(deployment: Deployment) -> None:
    config = stack_config(deployment.stack)
    (topic,) = deployment.of_type("aws:sns/topic:Topic")
    (subscription,) = deployment.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert subscription.inputs == {"topic": topic["arn"], "protocol": "email", "endpoint": config["chatops:alarmEmail"]}
    alarms = [a.inputs for a in deployment.of_type(ALARM)]
    for alarm in alarms:
        assert alarm["alarmActions"] == [topic["arn"]]
        assert alarm["comparisonOperator"] == "GreaterThanThreshold"
        assert alarm["threshold"] == 0
    # A DLQ the dead-letter worker empties is watched by what it receives; the others by what waits in them.
    watched_dlqs = {
        a["dimensions"]["QueueName"]: a["metricName"]
        for a in alarms
        if a["metricName"] in {"ApproximateNumberOfMessagesVisible", "NumberOfMessagesReceived"}
    }
    assert watched_dlqs == {
        f"chatops-{deployment.stack}-{queue}-dlq": "NumberOfMessagesReceived"
        if queue in REQUESTED_QUEUES
        else "ApproximateNumberOfMessagesVisible"
        for queue in QUEUES
    }
    watched_functions = {a["dimensions"]["FunctionName"] for a in alarms if a["metricName"] == "Errors"}
    assert watched_functions == {f.inputs["name"] for f in deployment.of_type(FUNCTION)}
    ours = {a["metricName"]: a for a in alarms if a["namespace"] == "ChatOps"}
    assert set(ours) == {"buildLockManager.lock.expired", "buildWorker.dispatch.failed"}
    for alarm in ours.values():
        assert alarm["dimensions"] == {"service": "chatops"}  # Powertools' EMF dimension, or the alarm sees nothing
        assert alarm["statistic"] == "Sum"


def _widgets(deployment: Deployment) -> dict[str, dict[str, Any]]:
    """The dashboard's widgets by title."""
    (dashboard,) = deployment.of_type("aws:cloudwatch/dashboard:Dashboard")
    widgets = json.loads(dashboard.inputs["dashboardBody"])["widgets"]
    by_title = {w["properties"]["title"]: w for w in widgets}
    assert len(by_title) == len(widgets)  # a title says which graph it is: no two alike
    return by_title


def _series(properties: Mapping[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """A metric widget's metrics (not its expressions): namespace, name, the statistic it is drawn with (its own
    override, else the widget's), its options."""
    drawn = []
    for metric in properties["metrics"]:
        if isinstance(metric[0], dict):
            continue
        options = metric[-1] if isinstance(metric[-1], dict) else {}
        drawn.append((metric[0], metric[1], options.get("stat", properties["stat"]), options))
    return drawn


def _expressions(properties: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {m[0]["id"]: m[0] for m in properties.get("metrics", []) if isinstance(m[0], dict)}


def _evaluate(expression: str, values: Mapping[str, float]) -> float:
    """A metric-math expression of ids, numbers, + - * / and ``FILL(id, 0)`` on one data point (missing: 0)."""

    def value(node: ast.expr) -> float:
        match node:
            case ast.Constant(value=int() | float() as number):
                return float(number)
            case ast.Name(id=name):
                return values[name]
            case ast.Call(func=ast.Name(id="FILL"), args=[ast.Name(id=name), ast.Constant(value=0)]):
                return values.get(name, 0.0)
            case ast.BinOp(left=left, op=op, right=right):
                operate: dict[type[ast.operator], Callable[[float, float], float]] = {
                    ast.Add: operator.add,
                    ast.Sub: operator.sub,
                    ast.Mult: operator.mul,
                    ast.Div: operator.truediv,
                }
                return operate[type(op)](value(left), value(right))
        raise AssertionError(f"not metric math this test reads: {ast.dump(node)}")

    return value(ast.parse(expression, mode="eval").body)


def test_the_dashboard_graphs_what_build_stats_tells_and_the_services_health(deployment: Deployment) -> None:
    widgets = _widgets(deployment)
    metrics = [w["properties"] for w in widgets.values() if w["type"] == "metric"]
    drawn = {(namespace, name, stat) for p in metrics for namespace, name, stat, _ in _series(p)}
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
    for properties in metrics:
        for metric in properties["metrics"]:
            if metric[0] == "ChatOps":  # Powertools' EMF dimension, or the graph sees nothing
                assert metric[2:4] == ["service", "chatops"], metric
    assert all(w["properties"]["region"] == stack_config(deployment.stack)["aws:region"] for w in widgets.values())


def test_the_dashboard_grid_has_no_overlaps(deployment: Deployment) -> None:
    cells: set[tuple[int, int]] = set()
    for widget in _widgets(deployment).values():
        assert widget["x"] + widget["width"] <= 24
        area = {
            (x, y)
            for x in range(widget["x"], widget["x"] + widget["width"])
            for y in range(widget["y"], widget["y"] + widget["height"])
        }
        assert not cells & area, widget["properties"]["title"]
        cells |= area


def test_the_failure_rate_is_failed_runs_over_completed_and_failed_in_percent(deployment: Deployment) -> None:
    [properties] = [w["properties"] for w in _widgets(deployment).values() if "rate" in _expressions(w["properties"])]
    hidden = {options["id"]: name for _, name, _, options in _series(properties) if options.get("visible") is False}
    assert hidden == {"completed": runlock.RUN_COMPLETED_METRIC, "failed": runlock.RUN_FAILED_METRIC}
    assert properties["stat"] == "Sum"
    rate = _expressions(properties)["rate"]
    assert rate.get("visible", True)
    assert _evaluate(rate["expression"], {"completed": 3, "failed": 1}) == 25
    assert _evaluate(rate["expression"], {"failed": 2}) == 100  # a period with no completed run
    assert _evaluate(rate["expression"], {"completed": 4}) == 0
    assert properties["yAxis"]["left"] == {"min": 0, "max": 100}


def test_refusals_are_busy_and_frozen_and_their_sum(deployment: Deployment) -> None:
    [properties] = [
        w["properties"] for w in _widgets(deployment).values() if "refused" in _expressions(w["properties"])
    ]
    ids = {options["id"]: name for _, name, _, options in _series(properties) if "id" in options}
    assert ids == {"busy": build.BUSY_METRIC, "frozen": freeze.FROZEN_METRIC}
    assert _evaluate(_expressions(properties)["refused"]["expression"], {"busy": 2, "frozen": 1}) == 3
    assert _evaluate(_expressions(properties)["refused"]["expression"], {"frozen": 1}) == 1


def test_the_busiest_keys_and_hours_are_counted_from_the_build_workers_lock_acquired_lines(
    deployment: Deployment,
) -> None:
    build_function = _functions(deployment)["build"].inputs["name"]
    log_group = f"/aws/lambda/{build_function}"
    assert log_group in {g.inputs["name"] for g in deployment.of_type(LOG_GROUP)}
    logs = {w["properties"]["title"]: w["properties"] for w in _widgets(deployment).values() if w["type"] == "log"}
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


# ------------------------------------------------------------------------------------------------- outputs
def test_the_outputs_are_the_urls_slack_and_github_need_and_the_table_name(deployment: Deployment) -> None:
    outputs = deployment.outputs
    assert outputs["slackRequestUrl"].startswith("https://")
    assert outputs["slackRequestUrl"].endswith("/slack/commands")
    assert outputs["slackInteractivityUrl"].endswith("/slack/interactions")
    assert outputs["githubWebhookUrl"].endswith("/github/webhook")
    assert "//slack" not in outputs["slackRequestUrl"].removeprefix("https://")
    assert outputs["lockTableName"] == stack_config(deployment.stack)["chatops:lockTableName"]
    assert outputs["idempotencyTableName"] == f"chatops-{deployment.stack}-idempotency"
    assert outputs["historyTableName"] == f"chatops-{deployment.stack}-history"
