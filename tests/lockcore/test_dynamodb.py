"""The DynamoDB store: it translates faithfully, spends one request per operation, and fails with one named
error per expected failure."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockcore import machine as m
from lockcore.dynamodb import DynamoDBLockStore, _Expression, from_wire, is_dynamodb_itself, make_client
from lockcore.errors import LockStoreError, NoCredentials, StoreThrottled, StoreUnreachable, TableMissing
from lockcore.expressions import (
    Above,
    Absent,
    AllOf,
    AnyOf,
    AtMost,
    Effect,
    Equals,
    Guard,
    Item,
    Missing,
    Not,
    OneOf,
    apply,
    holds,
)
from lockcore.outcomes import HeldBySomeone, NotHolder, Refusal, Released
from lockcore.record import Status
from tests.lockcore.stores import (
    WSGI,
    SimClock,
    client_for,
    denying,
    dynamodb_store,
    moto_behind,
    throttling,
    without_old_item,
)

pytestmark = pytest.mark.usefixtures("in_process_aws")
_T = TypeVar("_T")
KEY = "build-router-plt"


# ------------------------------------------------------------------------------ translation fidelity
# Numbers stay numbers and strings strings, as in every item we write: moto crashes comparing a string attribute
# with a number (DynamoDB answers false), so that mismatch is left to the in-memory semantics' own tests.
numeric_names = st.sampled_from(["token", "leaseExpiresAt", "ttl"])
text_names = st.sampled_from(["status", "owner", "queue", "watchers"])
names = numeric_names | text_names
# The queue and the watchers are JSON text compared whole: quotes, brackets and unicode must survive the wire.
QUEUES = ['[{"requesters":[["req-a","U1","al"]],"leaseSeconds":60}]', '["U1","Ü2"]', "[]"]
values = st.one_of(st.integers(0, 4), st.sampled_from(["IN_PROGRESS", "COMPLETED", "req-a", "req-b", "3", *QUEUES]))
leaves = st.one_of(
    st.just(Missing()),
    st.builds(Absent, names),
    st.builds(Equals, names, values),
    st.builds(OneOf, names, st.lists(values, min_size=1, max_size=3, unique=True).map(tuple)),
    st.builds(AtMost, numeric_names, st.integers(0, 4)),
    st.builds(Above, numeric_names, st.integers(0, 4)),
)
guards: st.SearchStrategy[Guard] = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda parts: AllOf(tuple(parts))),
        st.lists(inner, min_size=1, max_size=3).map(lambda parts: AnyOf(tuple(parts))),
        st.builds(Not, inner),
    ),
    max_leaves=6,
)
stored_items = st.none() | st.fixed_dictionaries(
    {},
    optional={
        "token": st.integers(0, 4),
        "leaseExpiresAt": st.integers(0, 4),
        "ttl": st.integers(0, 4),
        "status": st.sampled_from(["IN_PROGRESS", "COMPLETED", "3"]),
        "owner": st.sampled_from(["req-a", "req-b"]),
        "queue": st.sampled_from(QUEUES),
        "watchers": st.sampled_from(QUEUES),
    },
).map(lambda attrs: {"lockKey": KEY, **attrs})
effects = st.builds(
    Effect,
    set=st.fixed_dictionaries(
        {},
        optional={
            "status": st.sampled_from(["IN_PROGRESS", "FAILED"]),
            "owner": st.sampled_from(["req-a", "req-c"]),
            "leaseExpiresAt": st.integers(0, 9),
            "runId": values,
            "queue": st.sampled_from(QUEUES),
        },
    ),
    # A write may only remove (dequeueing the last request, clearing the watchers).
    remove=st.frozensets(st.sampled_from(["ttl", "releasedAt", "runUrl", "queue", "watchers"])),
    bump=st.sampled_from([None, "token"]),
).filter(lambda effect: (effect.set or effect.remove or effect.bump) and not set(effect.set) & effect.remove)


@pytest.fixture(scope="module")
def table() -> Iterator[DynamoDBLockStore]:
    under_test = dynamodb_store("moto", client_for(None), SimClock())
    assert isinstance(under_test.store, DynamoDBLockStore)
    yield under_test.store
    under_test.close()


@given(guard=guards, item=stored_items, effect=effects)
def test_dynamodb_evaluates_every_guard_and_effect_as_the_model_does(
    table: DynamoDBLockStore, guard: Guard, item: Item | None, effect: Effect
) -> None:
    """The stores agree only if DynamoDB's reading of our expressions is ours: checked on moto, the reference
    we have here, for any guard on any item — including attributes of the wrong type, and no item at all."""
    client = table.client
    client.delete_item(TableName=table.table, Key={"lockKey": {"S": KEY}})
    if item is not None:
        wire = {k: ({"N": str(v)} if isinstance(v, int) else {"S": v}) for k, v in item.items()}
        client.put_item(TableName=table.table, Item=wire)
    result = table._write(m.Transition(m.Operation.NOTE, KEY, guard, effect))
    assert isinstance(result, m.Written) == holds(guard, item), f"guard {guard} on {item}"
    if isinstance(result, m.Written):
        assert result.item == apply(effect, {"lockKey": KEY}, item)
    else:
        assert result.item == item


# ------------------------------------------------------------------------------ one request per operation
class RequestCounter:
    def __init__(self, store: DynamoDBLockStore) -> None:
        self.sent: list[str] = []
        store.client.meta.events.register("before-send.dynamodb", self._count)

    def _count(self, request: Any, **_: Any) -> None:
        self.sent.append(request.headers["X-Amz-Target"].decode().split(".")[-1])

    def during(self, action: Callable[[], object]) -> list[str]:
        return self.answer(action)[1]

    def answer(self, action: Callable[[], _T]) -> tuple[_T, list[str]]:
        """What ``action`` answered, and the requests it sent."""
        start = len(self.sent)
        answered = action()
        return answered, self.sent[start:]


def test_every_lock_operation_is_one_request() -> None:
    under_test = dynamodb_store("moto", client_for(None), SimClock())
    table = under_test.store
    assert isinstance(table, DynamoDBLockStore)
    counter = RequestCounter(table)
    request = m.AcquireRequest(KEY + "-count", "req-a", 600)
    lose = m.AcquireRequest(KEY + "-count", "req-b", 600)
    key = request.lock_key
    assert counter.during(lambda: table.acquire(request)) == ["UpdateItem"]
    assert counter.during(lambda: table.acquire(lose)) == ["UpdateItem"]  # the holder comes back with ALL_OLD
    assert counter.during(lambda: table.acquire(request)) == ["UpdateItem"]  # re-entered
    assert counter.during(lambda: table.extend(key, "req-a", 1, 60)) == ["UpdateItem"]
    assert counter.during(lambda: table.note(key, "req-a", 1, runId="9")) == ["UpdateItem"]
    assert counter.during(lambda: table.check(key, 1)) == ["GetItem"]
    assert counter.during(lambda: table.release(key, "req-a", 1, Status.COMPLETED)) == ["UpdateItem"]
    assert counter.during(lambda: table.release(key, "req-a", 1, Status.COMPLETED)) == ["UpdateItem"]
    assert counter.during(lambda: table.acquire(lose)) == ["UpdateItem"]
    assert counter.during(lambda: table.force_release(key, 2, "U-admin", "stuck")) == ["UpdateItem"]
    assert counter.during(lambda: table.expire(key, 2)) == ["UpdateItem"]
    assert counter.during(lambda: table.get(key)) == ["GetItem"]
    assert counter.during(table.list) == ["Scan"]
    under_test.close()


def test_the_queue_costs_one_more_request_only_where_it_exists() -> None:
    """The first write assumes no queue and no watchers; where they exist, the refused write's ALL_OLD item
    decides the second write — no read. Leaving the queue and watching read first (one GetItem)."""
    under_test = dynamodb_store("moto", client_for(None), SimClock())
    table = under_test.store
    assert isinstance(table, DynamoDBLockStore)
    counter = RequestCounter(table)
    key = KEY + "-queue"
    table.acquire(m.AcquireRequest(key, "req-a", 600))
    queued = m.AcquireRequest(key, "req-b", 600, queue=True)
    assert counter.during(lambda: table.acquire(queued)) == ["UpdateItem"] * 2
    assert counter.during(lambda: table.acquire(queued)) == ["UpdateItem"]  # already waiting: nothing written
    assert counter.during(lambda: table.watch(key, "U1")) == ["GetItem", "UpdateItem"]
    assert counter.during(lambda: table.acquire(m.AcquireRequest(key, "req-c", 600, queue=True))) == ["UpdateItem"] * 2
    assert counter.during(lambda: table.dequeue(key, "req-c")) == ["GetItem", "UpdateItem"]
    handed = table.release(key, "req-a", 1, Status.COMPLETED)
    assert isinstance(handed, Released) and handed.handed_to is not None
    assert handed.handed_to.record.owner == "req-b" and handed.handed_to.record.token == 2
    assert counter.sent[-2:] == ["UpdateItem", "UpdateItem"]
    freed = table.release(key, "req-b", 2, Status.COMPLETED)
    assert isinstance(freed, Released) and freed.notify == ("U1",)
    assert counter.during(lambda: table.release(key, "req-b", 2, Status.COMPLETED)) == ["UpdateItem"]
    item = table._read(key)
    assert item is not None and not {"queue", "watchers"} & set(item)
    under_test.close()


# ------------------------------------------------------------------------------ other stores
def as_it_is(app: WSGI) -> WSGI:
    return app


def test_a_store_that_never_returns_the_old_item_costs_one_read_per_refusal_and_answers_as_dynamodb() -> None:
    """dynalite, older DynamoDB Local: no flag to set — each refusal without the item costs one consistent read,
    and every answer is the one DynamoDB gives in one request."""
    with moto_behind(without_old_item) as url:
        under_test = dynamodb_store("no-all-old", client_for(url), SimClock())
        store = under_test.store
        assert isinstance(store, DynamoDBLockStore) and not store.returns_old_item
        counter = RequestCounter(store)
        assert counter.during(lambda: store.acquire(m.AcquireRequest(KEY, "req-a", 600, locked_by_name="al"))) == [
            "UpdateItem"
        ]
        held, sent = counter.answer(lambda: store.acquire(m.AcquireRequest(KEY, "req-b", 600)))
        assert sent == ["UpdateItem", "GetItem"]
        assert isinstance(held, HeldBySomeone) and held.holder.locked_by_name == "al"
        refusals = [
            (lambda: store.release(KEY, "req-b", 1, Status.COMPLETED), Refusal.NOT_OWNER),
            (lambda: store.extend(KEY, "req-a", 7, 60), Refusal.STALE_TOKEN),
            (lambda: store.release("build-never-plt", "req-a", 1, Status.COMPLETED), Refusal.NO_LOCK),
        ]
        for call, reason in refusals:
            refused, sent = counter.answer(call)
            assert sent == ["UpdateItem", "GetItem"]
            assert isinstance(refused, NotHolder) and refused.reason is reason
        # The holder's release meets a queue: refused without the item, read, then the hand-off.
        store.acquire(m.AcquireRequest(KEY, "req-c", 600, queue=True))
        released, sent = counter.answer(lambda: store.release(KEY, "req-a", 1, Status.COMPLETED))
        assert sent == ["UpdateItem", "GetItem", "UpdateItem"]
        assert isinstance(released, Released) and released.handed_to is not None
        assert released.handed_to.record.owner == "req-c"
        assert not store.returns_old_item, "nothing it answered showed otherwise"
        under_test.close()


def test_a_compatible_store_that_returns_the_old_item_is_trusted_once_it_has() -> None:
    with moto_behind(as_it_is) as url:
        under_test = dynamodb_store("all-old-over-http", client_for(url), SimClock())
        store = under_test.store
        assert isinstance(store, DynamoDBLockStore) and not store.returns_old_item, "not an AWS endpoint"
        counter = RequestCounter(store)
        never = ("build-never-plt", "req-a", 1, Status.COMPLETED)
        assert counter.during(lambda: store.release(*never)) == ["UpdateItem", "GetItem"]
        store.acquire(m.AcquireRequest(KEY, "req-a", 600))
        assert counter.during(lambda: store.acquire(m.AcquireRequest(KEY, "req-b", 600))) == ["UpdateItem"]
        assert store.returns_old_item
        assert counter.during(lambda: store.release(*never)) == ["UpdateItem"]
        under_test.close()


@pytest.mark.parametrize(
    ("endpoint", "itself"),
    [
        ("https://dynamodb.ca-central-1.amazonaws.com", True),
        ("https://dynamodb-fips.us-east-1.amazonaws.com", True),
        ("https://dynamodb.cn-north-1.amazonaws.com.cn", True),
        ("https://dynamodb.eu-west-1.api.aws", True),
        ("https://vpce-0abc-1234.dynamodb.us-east-1.vpce.amazonaws.com", True),
        ("http://127.0.0.1:8000", False),
        ("http://localhost:4567", False),
        ("http://dynamodb-local:8000", False),
        ("https://123456789012.ddb.us-east-1.amazonaws.com", True),
        ("https://amazonaws.com.example.org", False),
        ("http://ec2-3-96-1-2.ca-central-1.compute.amazonaws.com:8000", False),
        ("https://my-ddb-proxy-1234.elb.us-east-1.amazonaws.com", False),
    ],
)
def test_dynamodb_itself_is_known_by_its_endpoint(endpoint: str, itself: bool) -> None:
    assert is_dynamodb_itself(endpoint) is itself
    assert DynamoDBLockStore("t", client=client_for(endpoint)).returns_old_item is itself


def test_throttling_is_retried_by_botocore_then_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    with moto_behind(throttling) as url:
        store = DynamoDBLockStore("any", client=client_for(url))
        counter = RequestCounter(store)
        with pytest.raises(StoreThrottled, match="throttling"):
            store.acquire(m.AcquireRequest(KEY, "req-a", 600))
        assert counter.sent == ["UpdateItem"] * 3


# ------------------------------------------------------------------------------ expected failures, one line each
def test_a_missing_table_is_named() -> None:
    store = DynamoDBLockStore("no-such-table", client=client_for(None))
    with pytest.raises(TableMissing, match=r"no-such-table.*create-table") as failure:
        store.acquire(m.AcquireRequest(KEY, "req-a", 600))
    assert "\n" not in str(failure.value)


def test_an_unreachable_endpoint_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = DynamoDBLockStore(client=client_for(f"http://127.0.0.1:{port}"))
    with pytest.raises(StoreUnreachable, match=f"127.0.0.1:{port}"):
        store.check(KEY, 1)


def test_missing_credentials_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it caches the credentials it found earlier
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = DynamoDBLockStore(client=client_for(f"http://127.0.0.1:{port}"))
    with pytest.raises(NoCredentials, match="AWS_PROFILE"):
        store.get(KEY)


def test_the_wire_format_round_trips_numbers_as_integers() -> None:
    assert from_wire({"token": {"N": "3"}, "owner": {"S": "req-a"}}) == {"token": 3, "owner": "req-a"}
    expression = _Expression()
    assert expression.condition(AllOf((Equals("token", 3), Equals("token", 4)))) == "(#n0 = :v0 AND #n0 = :v1)"


# ------------------------------------------------------------------------------ the client's configuration
def test_the_client_retries_in_standard_mode_unless_the_environment_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)
    client = make_client("http://127.0.0.1:9", region="ca-central-1")
    config: Any = client.meta.config  # botocore's Config is typed without its attributes
    assert config.retries == {"mode": "standard", "total_max_attempts": 6}  # 5 retries
    assert (config.connect_timeout, config.read_timeout) == (3, 5)
    assert (client.meta.endpoint_url, client.meta.region_name) == ("http://127.0.0.1:9", "ca-central-1")
    monkeypatch.setenv("AWS_RETRY_MODE", "adaptive")
    adaptive = make_client("http://127.0.0.1:9", region="ca-central-1")
    assert cast(Any, adaptive.meta.config).retries == {"mode": "adaptive", "total_max_attempts": 6}
    monkeypatch.delenv("AWS_RETRY_MODE")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    retries = cast(Any, make_client("http://127.0.0.1:9", region="ca-central-1").meta.config).retries
    assert retries == {"mode": "standard", "total_max_attempts": 2}


def test_no_region_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    with pytest.raises(LockStoreError, match="no AWS region: set AWS_REGION"):
        make_client()


def test_aws_region_comes_before_aws_default_region_as_in_the_other_aws_sdks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """botocore 1.43 reads only AWS_DEFAULT_REGION; the AWS CLI v2 and the other SDKs read AWS_REGION first."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_REGION", raising=False)
    assert make_client("http://127.0.0.1:9").meta.region_name == "eu-west-1"
    monkeypatch.setenv("AWS_REGION", "ap-southeast-2")
    assert make_client("http://127.0.0.1:9").meta.region_name == "ap-southeast-2"
    assert make_client("http://127.0.0.1:9", region="ca-central-1").meta.region_name == "ca-central-1"
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert make_client("http://127.0.0.1:9", session=boto3.Session()).meta.region_name == "ap-southeast-2"


def test_other_refusals_from_dynamodb_are_one_named_line() -> None:
    with moto_behind(denying) as url:
        store = DynamoDBLockStore("locks", client=client_for(url))
        with pytest.raises(LockStoreError, match=r"^DynamoDB refused the request on 'locks': AccessDenied") as err:
            store.get(KEY)
    assert "\n" not in str(err.value) and "not allowed" in str(err.value)


def test_a_refusal_on_a_key_never_locked_is_one_request() -> None:
    """DynamoDB returns no item when there was none: that is the answer, not a reason to read again."""
    under_test = dynamodb_store("moto", client_for(None), SimClock())
    store = under_test.store
    assert isinstance(store, DynamoDBLockStore)
    counter = RequestCounter(store)
    for call in (
        lambda: store.release("build-never-plt", "req-a", 1, Status.COMPLETED),
        lambda: store.extend("build-never-plt", "req-a", 1, 60),
        lambda: store.note("build-never-plt", "req-a", 1, runId="1"),
        lambda: store.force_release("build-never-plt", 1, "U-admin", "why"),
        lambda: store.expire("build-never-plt", 1),
    ):
        assert counter.during(call) == ["UpdateItem"]
    assert store.release("build-never-plt", "req-a", 1, Status.COMPLETED) == NotHolder(Refusal.NO_LOCK, None)
    under_test.close()
