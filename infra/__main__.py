"""The ChatOps stack, read top to bottom as the architecture:

    Slack, GitHub ──HTTPS──▶ router (Function URL: /slack/commands, /slack/interactions, /slack/events,
                                │ /github/webhook)
                                │ verify, parse, enqueue — nothing slower
                                ▼
           SQS: build · deploy · status · echo · github   (each with its DLQ)
                                │  └─ DLQs of build · deploy · status · echo ─▶ deadletter (tells the requester)
                                │ event source mappings, ReportBatchItemFailures
                                ▼
           workers: build (build + deploy) · status · echo · webhook          EventBridge ─▶ reaper
                                │                                                  │
                                ▼                                                  ▼
           DynamoDB: lock table (lockKey) · idempotency records        the lock table (expired leases)
                     └─ stream ─▶ history writer ─▶ history table (30 days; /build history, /build stats)
                                       └─ an App Home refresh, unless one is pending ─▶ status queue
           SSM SecureStrings (read at run time; written from the stack's secrets) · GitHub dispatch · Slack replies
           CloudWatch: alarms ─▶ SNS e-mail · dashboard
           IAM for the deploy workflows: the fencing-check policy (and a role for GitHub's OIDC token, if asked)

Deploy the tables first (``pulumi up --target`` them, see docs/deploying.md), then everything.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Pulumi runs this file as a script from infra/ (Pulumi.yaml: `main: infra/`): the repository root goes on the
# path so that the program imports `infra.…` exactly as the tests do.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import pulumi  # noqa: E402
import pulumi_aws as aws  # noqa: E402

from infra import github_variables, policies, settings  # noqa: E402
from infra.artifact import lambda_code  # noqa: E402
from infra.components.deploy_access import DeployAccess, DeployAccessArgs  # noqa: E402
from infra.components.endpoint import HttpsEndpoint, HttpsEndpointArgs  # noqa: E402
from infra.components.functions import WorkerFunction, WorkerFunctionArgs  # noqa: E402
from infra.components.monitoring import Monitoring, MonitoringArgs  # noqa: E402
from infra.components.queues import CommandQueue, CommandQueueArgs  # noqa: E402
from infra.components.schedule import Schedule, ScheduleArgs  # noqa: E402
from infra.components.secrets import StackSecrets, StackSecretsArgs  # noqa: E402
from infra.components.tables import HistoryTable, IdempotencyTable, LockTable, TableArgs  # noqa: E402
from infra.environment import worker_environment  # noqa: E402
from infra.roster import QUEUES, WORKERS, consumer_of, dead_letter_consumer_of  # noqa: E402

# ------------------------------------------------------------------------------------------ configuration
config = settings.load(pulumi.get_stack())
account_id = aws.get_caller_identity().account_id
region = aws.get_region().region
code = lambda_code(config, region)

# ------------------------------------------------------------------------------------------------- state
locks = LockTable("locks", TableArgs(config.lock_table_name))
idempotency = IdempotencyTable("idempotency", TableArgs(config.idempotency_table_name))
lock_history = HistoryTable("history", TableArgs(config.history_table_name))

# ----------------------------------------------------------------------------------------------- secrets
held = {secret: settings.stack_secret(secret) for secret in sorted(config.stack_secrets)}
if held:  # the others are parameters made by hand, at the same names
    StackSecrets("secrets", StackSecretsArgs(parameters=config.ssm_parameters, values=held))

# ------------------------------------------------------------------------------------------------ queues
queues = {
    queue: CommandQueue(
        queue,
        CommandQueueArgs(
            queue_name=f"{config.prefix}-{queue}",
            consumer_timeout_seconds=consumer_of(queue).timeout,
            max_receive_count=config.max_receive_count,
            dead_letter_consumer_timeout_seconds=told.timeout if (told := dead_letter_consumer_of(queue)) else None,
        ),
    )
    for queue in QUEUES
}

# --------------------------------------------------------------------------------------------- functions
functions: dict[str, WorkerFunction] = {}
for worker in WORKERS:
    parameter_arns = [policies.parameter_arn(region, account_id, config.ssm_parameters[s]) for s in worker.secrets]
    statements: list[policies.Statement] = []
    if worker.sends_to:
        statements.append(policies.send([queues[queue].arn for queue in worker.sends_to]))
    if worker.lock_table:
        statements.append(policies.lock_table(locks.arn, worker.lock_table))
    if worker.idempotency:
        statements.append(policies.idempotency_table(idempotency.arn))
    if worker.history_table:
        statements.append(policies.history_table(lock_history.arn, worker.history_table))
    if worker.lock_stream:
        statements.extend(policies.read_lock_stream(locks.stream_arn))
    if parameter_arns:
        statements.append(policies.read_parameters(parameter_arns))
        statements.append(policies.decrypt_parameters(region, account_id, parameter_arns))
    functions[worker.name] = WorkerFunction(
        worker.name,
        WorkerFunctionArgs(
            worker=worker,
            function_name=f"{config.prefix}-{worker.name}",
            code=code.archive,
            layers=code.layers,
            environment=worker_environment(
                worker,
                config,
                lock_table_name=locks.name,
                idempotency_table_name=idempotency.name,
                history_table_name=lock_history.name,
                queue_urls={queue: queues[queue].url for queue in QUEUES},
            ),
            statements=statements,
            log_retention_days=config.log_retention_days,
            queues=[queues[queue] for queue in worker.consumes],
            dead_letters_of=[queues[queue] for queue in worker.consumes_dead_letters],
            stream_arn=locks.stream_arn if worker.lock_stream else None,
        ),
    )

# ------------------------------------------------------------------------------------- ways in: HTTPS, clock
(router,) = (worker for worker in WORKERS if worker.http)
endpoint = HttpsEndpoint("router", HttpsEndpointArgs(function_name=functions[router.name].name))
for worker in WORKERS:
    if worker.schedule:
        Schedule(
            worker.name,
            ScheduleArgs(
                rule_name=f"{config.prefix}-{worker.name}",
                expression=worker.schedule,
                function_name=functions[worker.name].name,
                function_arn=functions[worker.name].arn,
            ),
        )

# -------------------------------------------------------------------------------------------- monitoring
monitoring = Monitoring(
    "monitoring",
    MonitoringArgs(
        prefix=config.prefix,
        region=region,
        alarm_email=config.alarm_email,
        dead_letter_queues={queue: queues[queue].dead_letters_name for queue in QUEUES},
        told_dead_letters=frozenset(queue for queue in QUEUES if dead_letter_consumer_of(queue) is not None),
        functions={name: function.name for name, function in functions.items()},
        tables={"locks": locks.name, "idempotency": idempotency.name, "history": lock_history.name},
    ),
)

# ------------------------------------------------------------------------------- the deploy workflows' side
deploy_access = DeployAccess(
    "deploy-access",
    DeployAccessArgs(
        prefix=config.prefix,
        lock_table_arn=locks.arn,
        repositories=config.repositories,
        role=config.deploy_role,
    ),
)
workflow_variables = github_variables.variables(config, region, locks.name, deploy_access.role_arn)
if missing := github_variables.missing(workflow_variables):
    pulumi.log.warn(f"githubVariables lacks {', '.join(missing)}: the example deploy workflow needs them")

# ----------------------------------------------------------------------------------------------- outputs
pulumi.export("slackRequestUrl", endpoint.slack_commands_url)
pulumi.export("slackInteractivityUrl", endpoint.slack_interactions_url)
pulumi.export("slackEventsUrl", endpoint.slack_events_url)
pulumi.export("githubWebhookUrl", endpoint.github_webhook_url)
pulumi.export("lockTableName", locks.name)
pulumi.export("idempotencyTableName", idempotency.name)
pulumi.export("historyTableName", lock_history.name)
pulumi.export("alarmTopicArn", monitoring.topic_arn)
pulumi.export("distributedLockEnabled", config.lock_enabled)
pulumi.export("ssmParameterNames", dict(config.ssm_parameters))
pulumi.export("fencingCheckPolicyArn", deploy_access.policy_arn)
if deploy_access.role_arn is not None:
    pulumi.export("deployRoleArn", deploy_access.role_arn)
pulumi.export("githubVariables", workflow_variables)
pulumi.export("githubVariableCommands", github_variables.commands(workflow_variables, config.repositories))
