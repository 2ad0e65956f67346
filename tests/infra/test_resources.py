"""Every resource property the design asks for, on the program as each stack file configures it (mocks)."""

from __future__ import annotations

import json

from infra.components import endpoint
from infra.components.queues import VISIBILITY_FACTOR
from infra.roster import QUEUES, REQUESTED_QUEUES, WORKERS, consumer_of, dead_letter_consumer_of
from tests.infra.conftest import Deploy
from tests.infra.stack import ACCOUNT_ID, Deployment, Resource, stack_config
from workers.handlers import router

TABLE = "aws:dynamodb/table:Table"
QUEUE = "aws:sqs/queue:Queue"
FUNCTION = "aws:lambda/function:Function"
MAPPING = "aws:lambda/eventSourceMapping:EventSourceMapping"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"


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


# ------------------------------------------------------------------------------------------------- outputs
def test_every_url_the_endpoint_hands_out_is_a_route_of_the_router() -> None:
    paths = {endpoint.SLACK_COMMANDS_PATH, endpoint.SLACK_INTERACTIONS_PATH, endpoint.SLACK_EVENTS_PATH}
    assert {f"/{path}" for path in {*paths, endpoint.GITHUB_WEBHOOK_PATH}} == set(router.ROUTES)


def test_the_outputs_are_the_urls_slack_and_github_need_and_the_table_name(deployment: Deployment) -> None:
    outputs = deployment.outputs
    assert outputs["slackRequestUrl"].startswith("https://")
    assert outputs["slackRequestUrl"].endswith("/slack/commands")
    assert outputs["slackInteractivityUrl"].endswith("/slack/interactions")
    assert outputs["slackEventsUrl"] == outputs["slackRequestUrl"].replace("/slack/commands", "/slack/events")
    assert outputs["githubWebhookUrl"].endswith("/github/webhook")
    assert "//slack" not in outputs["slackRequestUrl"].removeprefix("https://")
    assert outputs["lockTableName"] == stack_config(deployment.stack)["chatops:lockTableName"]
    assert outputs["idempotencyTableName"] == f"chatops-{deployment.stack}-idempotency"
    assert outputs["historyTableName"] == f"chatops-{deployment.stack}-history"
