"""Which run may change which lock: the one rule, for the webhook worker, the reaper and the build worker alike.

A run's name (``build-router-plt · cid=…``, :mod:`workers.protocol.workflow`) says which lock a run *claims*, and
anyone can choose a name: a pull request's title, a commit message, another workflow's ``run-name``. So a run
changes a lock only when GitHub's own facts about it agree with what the lock's request dispatched:

- it is a ``workflow_dispatch`` run (``workflow_run.event``) — nobody dispatches without write access;
- of the workflow the lock's command dispatches for its component (``path`` ``.github/workflows/build.yml``, or
  ``workflow_id`` when the configuration names the workflow by id), in that component's repository
  (:meth:`~workers.protocol.config.Config.workflow_of`);
- its name carries the lock's correlation id, and its id is the run id the lock noted, when it noted one.

A lock that is not a command's run lock — a freeze (``freeze-<env>``) above all — is never changed by a run:
only ``/deploy unfreeze`` (or its lease) ends a freeze. A fact GitHub did not give us (a message queued before
the router noted the run's event) fails closed: the reaper, which asks GitHub's API, sees the run's end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from lockcore.record import LockRecord
from workers.protocol.config import Action, Config, WorkflowTarget
from workers.protocol.envelope import WorkflowRunEnvelope
from workers.protocol.workflow import Run, parse_run_name

WORKFLOW_DISPATCH: Final = "workflow_dispatch"
WORKFLOWS_DIRECTORY: Final = ".github/workflows/"


@dataclass(frozen=True)
class RunFacts:
    """What GitHub says of a run — from a ``workflow_run`` webhook or from its REST API — and the lock its name
    claims."""

    run_id: int
    event: str | None
    """``workflow_run.event``: ``workflow_dispatch``, ``push``, ``pull_request``…; ``None`` when not known."""
    workflow_path: str
    """``.github/workflows/build.yml``."""
    workflow_id: int | None
    repository: str
    """owner/name."""
    lock_key: str | None
    correlation_id: str | None

    @classmethod
    def of_event(cls, event: WorkflowRunEnvelope) -> RunFacts:
        named = parse_run_name(event.display_title) or parse_run_name(event.name)
        return cls(
            event.run_id,
            event.event,
            event.workflow_path,
            event.workflow_id,
            event.repository,
            named[0] if named else None,
            named[1] if named else None,
        )

    @classmethod
    def of_run(cls, run: Run) -> RunFacts:
        named = parse_run_name(run.display_title) or parse_run_name(run.name)
        return cls(
            run.id,
            run.event or None,
            run.path,
            run.workflow_id,
            run.repository,
            named[0] if named else None,
            named[1] if named else None,
        )


def not_a_dispatch_of(run: RunFacts, workflow: str, repository: str) -> str | None:
    """Why ``run`` is not a ``workflow_dispatch`` run of ``workflow`` (a file name like ``build.yml``, or an id)
    in ``repository``; ``None`` when it is."""
    if run.event is None:
        return "the run's event is not known (a message from before the router noted it)"
    if run.event != WORKFLOW_DISPATCH:
        return f"a {run.event} run, not a {WORKFLOW_DISPATCH}"
    if run.repository.lower() != repository.lower():
        return f"a run in {run.repository or 'no repository'}, not in {repository}"
    if workflow.isdigit():
        if run.workflow_id != int(workflow):
            return f"a run of workflow {run.workflow_id}, not of workflow {workflow}"
    elif run.workflow_path != WORKFLOWS_DIRECTORY + workflow:
        return f"a run of {run.workflow_path or 'no workflow'}, not of {WORKFLOWS_DIRECTORY}{workflow}"
    return None


def not_this_runs_lock(run: RunFacts, record: LockRecord | None, config: Config) -> str | None:
    """Why ``run`` may not change ``record`` (release it, renew it); ``None`` when it may.

    The correlation id is the request's, put in the run's name at dispatch: any other request — an older one
    whose event arrives late, or a newer holder — has another. A lock that noted a different run id belongs to
    another run of this request (which the build worker never starts; refuse rather than guess).
    """
    if run.lock_key is None or run.correlation_id is None:
        return "the run's name names no lock"
    if record is None:
        return "no lock is recorded under this key"
    if record.lock_key != run.lock_key:
        return f"the run names {run.lock_key}, not {record.lock_key}"
    target = dispatched_to(record, config)
    if target is None:  # a freeze: no command dispatches a run under it
        return "not a run's lock: only its own command changes it (a freeze: /deploy unfreeze)"
    not_dispatched = not_a_dispatch_of(run, target.workflow, target.repository)
    if not_dispatched is not None:
        return not_dispatched
    if record.correlation_id != run.correlation_id:
        return f"the lock belongs to another request now (correlation id {record.correlation_id or 'none'})"
    noted = noted_run_id(record)
    if noted is not None and noted != run.run_id:
        return f"the lock noted run {noted}, not run {run.run_id}"
    return None


def dispatched_to(record: LockRecord, config: Config) -> WorkflowTarget | None:
    """Where the run of ``record`` was dispatched: its command's workflow for the component it names (the holder's,
    whatever the lock's scope); ``None`` for a lock no command dispatches under (a freeze)."""
    action = action_of(record)
    if action is None or action not in config.commands:
        return None
    return config.workflow_of(action, record.component)


def repository_of(record: LockRecord, config: Config) -> str:
    """The repository the run of ``record`` is in (the default one for a lock no command dispatches under)."""
    target = dispatched_to(record, config)
    return target.repository if target is not None else config.github.repository


def action_of(record: LockRecord) -> Action | None:
    """``build`` or ``deploy``: from the ``command`` note, else from the key (``deploy-api-prod``)."""
    for candidate in (record.notes.get("command", ""), record.lock_key.split("-", 1)[0]):
        try:
            return Action(candidate)
        except ValueError:
            continue
    return None


def noted_run_id(record: LockRecord) -> int | None:
    run_id = record.notes.get("runId", "")
    return int(run_id) if run_id.isdigit() else None


def completed_event_of(run: Run, *, correlation_id: str, delivery_id: str, received_at: int) -> WorkflowRunEnvelope:
    """A ``completed`` event for ``run`` as GitHub's REST API describes it — for the webhook worker, as if GitHub
    had delivered it (the reaper's hand-over of a run's end it could not tell itself)."""
    return WorkflowRunEnvelope(
        delivery_id=delivery_id,
        correlation_id=correlation_id,
        action="completed",
        run_id=run.id,
        run_attempt=run.run_attempt,
        name=run.name,
        display_title=run.display_title,
        status=run.status,
        conclusion=run.conclusion,
        html_url=run.html_url,
        head_sha=run.head_sha,
        workflow_path=run.path,
        repository=run.repository,
        received_at=received_at,
        event=run.event or None,
        workflow_id=run.workflow_id,
    )
