"""One ``pulumi.ComponentResource`` per concern; each takes a small args object and exposes what others need.

- :class:`~infra.components.tables.LockTable`, :class:`~infra.components.tables.IdempotencyTable`
- :class:`~infra.components.queues.CommandQueue` — a queue and its DLQ
- :class:`~infra.components.functions.WorkerFunction` — function, role, policy, log group, event source mappings
- :class:`~infra.components.endpoint.HttpsEndpoint` — the router's Function URL
- :class:`~infra.components.schedule.Schedule` — an EventBridge rule that invokes a function
- :class:`~infra.components.monitoring.Monitoring` — alarms to an SNS topic, and the dashboard
  (its widgets: :mod:`infra.components.dashboard`)
- :class:`~infra.components.secrets.StackSecrets` — the stack's secrets written to their SSM parameters
- :class:`~infra.components.deploy_access.DeployAccess` — the fencing-check policy and the deploy workflows' role
"""
