"""Lambda's DynamoDB Streams event source mapping, locally: read the lock table's stream, hand each batch to the
history writer.

moto keeps a real stream for a table with ``StreamSpecification`` and answers the ``dynamodbstreams`` API
(``DescribeStream``, ``GetShardIterator``, ``GetRecords``) on the same server as DynamoDB, so the local stack
reads the stream as Lambda does: each shard from its oldest record (``TRIM_HORIZON``), a batch at a time, in
order. A handler that raises leaves the shard's position where it was, and the same batch is handed again on the
next poll — Lambda's retry of a stream batch, which the writer's idempotent puts make harmless.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import botocore.exceptions

log = logging.getLogger(__name__)

StreamHandler = Callable[[dict[str, Any], Any], Any]
BATCH_SIZE = 100


class StreamPoller:
    """One stream, one handler: :meth:`drain` hands over everything new; :meth:`start` does so every ``every``."""

    def __init__(
        self,
        streams: Any,  # a boto3 ``dynamodbstreams`` client: no type stubs are installed for it
        stream_arn: str,
        handler: StreamHandler,
        context: Callable[[], Any],
        *,
        every_seconds: float = 0.2,
    ) -> None:
        self.streams = streams
        self.stream_arn = stream_arn
        self.handler = handler
        self.context = context
        self.every_seconds = every_seconds
        self.records = 0
        self.failed_batches = 0
        self._positions: dict[str, str | None] = {}
        """Shard id → the iterator to read next (None: the shard is closed and read to its end)."""
        self._mutex = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="poller-lock-stream", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def drain(self) -> int:
        """Hand every record not yet handed to the handler, shard by shard; answers how many were handled."""
        with self._mutex:
            handled = 0
            shards = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"].get("Shards", [])
            for shard in shards:
                shard_id = shard["ShardId"]
                if shard_id not in self._positions:
                    self._positions[shard_id] = self.streams.get_shard_iterator(
                        StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                    )["ShardIterator"]
                handled += self._read(shard_id)
            return handled

    def _read(self, shard_id: str) -> int:
        handled = 0
        while (position := self._positions.get(shard_id)) is not None:
            answer = self.streams.get_records(ShardIterator=position, Limit=BATCH_SIZE)
            records = answer.get("Records", [])
            if not records:
                return handled
            event = {"Records": [{**record, "eventSourceARN": self.stream_arn} for record in records]}
            try:
                self.handler(event, self.context())
            except Exception:  # as Lambda does: the batch is handed again, from the same position
                self.failed_batches += 1
                log.exception("the stream's handler raised: the batch is handed again on the next poll")
                return handled
            self._positions[shard_id] = answer.get("NextShardIterator")
            self.records += len(records)
            handled += len(records)
        return handled

    def _loop(self) -> None:
        while not self._stopping.wait(self.every_seconds):
            try:
                self.drain()
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
                if not self._stopping.is_set():
                    log.warning("reading the lock stream failed: %s", error)
