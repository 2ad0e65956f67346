"""The Pulumi program for the ChatOps service: ``pulumi up`` per environment (stack), tested with Pulumi's mocks.

- :mod:`infra.roster` — every Lambda function in one table: handler, queues, timeout, what it may touch.
- :mod:`infra.settings` — the stack's configuration (``Pulumi.<stack>.yaml``), read once and typed.
- :mod:`infra.command_config` — the workers' ``chatops.toml``, rendered from the stack's configuration.
- :mod:`infra.package` — the reproducible Lambda zip (``nox -s package``).
- :mod:`infra.policies` — the IAM statements, least privilege, as plain data.
- :mod:`infra.metrics` — what the dashboard and the alarms read: metric names, the design's rates and bounds.
- :mod:`infra.github_variables` — the repository variables the example workflows read, and the commands that set them.
- :mod:`infra.components` — one ``ComponentResource`` per concern; ``infra/__main__.py`` wires them.
"""
