"""What the dashboard and the alarms read, as data: the workers' metrics by name, the design's two rates as metric
math with their expected ranges, and the DynamoDB operations each table serves.

The workers write their metrics as EMF through Powertools (namespace ``ChatOps``, dimension ``service=chatops``:
:mod:`workers.adapters.runtime`); a graph or an alarm must name that dimension to see them. The names are spelled
again here because the program does not import the workers; ``tests/infra/test_metrics_emitted.py`` runs the
workers and fails when a name the dashboard or an alarm reads is no longer emitted. Why each rate is computed as it
is: docs/monitoring.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from infra.roster import IDEMPOTENCY_ACTIONS, WORKERS

NAMESPACE: Final = "ChatOps"
DIMENSIONS: Final = {"service": "chatops"}
ACQUIRED: Final = "buildLockManager.acquireLock.success"
QUEUED: Final = "buildLockManager.acquireLock.queued"
BUSY: Final = "buildLockManager.acquireLock.failed"
FROZEN: Final = "buildWorker.deploy.frozen"
RUN_COMPLETED: Final = "buildLockManager.run.completed"
RUN_FAILED: Final = "buildLockManager.run.failed"
LOCK_DURATION: Final = "buildLockManager.lockDuration"
LOCK_EXPIRED: Final = "buildLockManager.lock.expired"
DISPATCH_FAILED: Final = "buildWorker.dispatch.failed"

RATE_PERIOD: Final = 3600
"""The design's rates are judged per hour: per five minutes a rate is mostly one request or none."""


@dataclass(frozen=True)
class Rate:
    """A percentage of two counts of the workers' metrics, and the range the reference design expects it in."""

    id: str
    """The metric-math id of the rate (and of its alarm's expression)."""
    title: str
    metrics: Mapping[str, str]
    """Metric-math id → the ``ChatOps`` metric it reads (statistic Sum)."""
    expression: str
    expected: tuple[float, float]
    """The design's range in percent; above its upper bound is an alarm."""
    sample: str | None = None
    """The count the rate is a share of; with :attr:`min_sample`, an hour with fewer is not judged."""
    min_sample: int = 0

    @property
    def alarm_expression(self) -> str:
        """The rate, or 0 in an hour too small to judge (a 1-in-3 hour says nothing about a 10 % bound)."""
        if self.sample is None or self.min_sample <= 0:
            return self.expression
        return f"IF({self.sample} >= {self.min_sample}, {self.expression}, 0)"


_ATTEMPTS: Final = "FILL(acquired, 0) + FILL(busy, 0) + FILL(queued, 0)"
ACQUISITION_FAILURE: Final = Rate(
    id="acquisition_failure",
    title="Lock acquisition failure rate (%): busy or queued / acquire attempts — expected 5-10 %",
    metrics={"acquired": ACQUIRED, "busy": BUSY, "queued": QUEUED},
    expression=f"100 * (FILL(busy, 0) + FILL(queued, 0)) / ({_ATTEMPTS})",
    expected=(5.0, 10.0),
    sample=f"({_ATTEMPTS})",
    min_sample=20,
)
"""Of the build worker's acquire attempts, the share that met a held lock. A queued request counts: its acquire
was refused the lock (it waits instead of being told "busy"); its hand-off later is a second, successful attempt.
A frozen deploy takes no lock and is not an attempt."""

EXPIRATION: Final = Rate(
    id="expiration",
    title="Lock expiration rate (%): expired / acquired — expected under 1 %",
    metrics={"acquired": ACQUIRED, "expired": LOCK_EXPIRED},
    expression="100 * FILL(expired, 0) / MAX([FILL(acquired, 0), FILL(expired, 0)])",
    expected=(0.0, 1.0),
)
"""Of the locks taken, the share whose lease ran out before their holder let go. A lock taken in one hour may
expire in the next: an hour with an expiry and no acquisition counts 100 % (the MAX), never 0 / 0."""

RATES: Final = (ACQUISITION_FAILURE, EXPIRATION)


def _operations(actions: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({action.removeprefix("dynamodb:") for action in actions}))


TABLE_OPERATIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "locks": _operations(action for worker in WORKERS for action in worker.lock_table),
    "idempotency": _operations(IDEMPOTENCY_ACTIONS),
    "history": _operations(action for worker in WORKERS for action in worker.history_table),
}
"""Table key → the operations the roster says the workers call on it: the ``Operation`` dimension of DynamoDB's
``SystemErrors`` and ``ThrottledRequests``, which exist per table *and* operation only."""
