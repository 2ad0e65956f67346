"""``requires_lock`` and ``lock_scope`` as the design means them: a command without a lock dispatches at once; a
lock covers a component in an environment (``build-router-plt``), a component, an environment, or everything.

Properties over the key (two requests meet exactly when their scope says so; every key rides a run's name and names
its command back; the unlock button and the watch button know it), then the scopes end to end: the build worker, the
webhook worker that frees the lock from the run's name, and the reaper. GitHub and Slack on loopback, DynamoDB on
moto; nothing of ours mocked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockcore.record import LockRecord, Status
from tests.workers.github_events import GitHubEvents, scheduled_event
from tests.workers.worker_world import SHIPPED_CONFIG, Context, World, running_world, sqs_event
from workers.flows.status import UnlockTarget, lock_keys
from workers.handlers import build as build_lambda
from workers.handlers import reaper as reaper_lambda
from workers.handlers import webhook as webhook_lambda
from workers.protocol import schema
from workers.protocol.commands import Dispatch, acknowledgement
from workers.protocol.config import Action, Config, ConfigError, LockScope, config_of, load_config
from workers.protocol.runs import action_of
from workers.protocol.workflow import parse_run_name, run_name

NO_FAILURES: dict[str, Any] = {"batchItemFailures": []}
NAMES = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,8}", fullmatch=True).filter(
    lambda name: name not in schema.RESERVED_NAMES
)


def with_commands(text: str, **commands: dict[str, Any]) -> str:
    """``text`` (a chatops TOML) with keys added to ``[commands.<name>]``."""
    for name, keys in commands.items():
        lines = "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())
        text = text.replace(f"[commands.{name}]\n", f"[commands.{name}]\n{lines}", 1)
    return text


def configured(scope: LockScope, components: list[str], environments: list[str]) -> Config | None:
    """A configuration with both commands at ``scope``; ``None`` when the schema refuses it."""
    document = {
        "components": components,
        "environments": environments,
        "github": {"repository": "o/r"},
        "slack": {"allow_any_workspace": True},
        "commands": {action.value: {"lock_scope": scope.value} for action in Action},
    }
    checked = schema.check(document, schema.Form.FILE, "test")
    return None if checked.errors else config_of(checked.values, {})


def scoped(scope: LockScope, component: str, environment: str) -> tuple[str, ...]:
    """What a lock of ``scope`` is about, written out: the part of a request that the lock compares."""
    return {
        LockScope.COMPONENT_ENVIRONMENT: (component, environment),
        LockScope.COMPONENT: (component,),
        LockScope.ENVIRONMENT: (environment,),
        LockScope.GLOBAL: (),
    }[scope]


# ------------------------------------------------------------------------------------------------ the keys
@given(
    scope=st.sampled_from(LockScope),
    components=st.lists(NAMES, min_size=1, max_size=4, unique=True),
    environments=st.lists(NAMES, min_size=1, max_size=4, unique=True),
    data=st.data(),
)
def test_two_requests_exclude_each_other_exactly_when_their_scope_says_they_meet(
    scope: LockScope, components: list[str], environments: list[str], data: st.DataObject
) -> None:
    config = configured(scope, components, environments)
    if config is None:  # refused only for pairs that would share a key, and only where the pair is the scope
        assert scope is LockScope.COMPONENT_ENVIRONMENT
        assert len({f"{c}-{e}" for c in components for e in environments}) < len(components) * len(environments)
        return
    requests = st.tuples(st.sampled_from(Action), st.sampled_from(components), st.sampled_from(environments))
    (action_a, *a), (action_b, *b) = data.draw(requests), data.draw(requests)
    key_a = config.commands[action_a].lock_key(a[0], a[1])
    key_b = config.commands[action_b].lock_key(b[0], b[1])
    assert (key_a == key_b) == (action_a == action_b and scoped(scope, *a) == scoped(scope, *b))


@given(
    scope=st.sampled_from(LockScope),
    action=st.sampled_from(Action),
    component=NAMES,
    environment=NAMES,
    correlation_id=st.from_regex(r"[0-9]{1,12}\.[0-9]{1,12}", fullmatch=True),
)
def test_every_scopes_key_rides_a_run_name_and_names_its_command_back(
    scope: LockScope, action: Action, component: str, environment: str, correlation_id: str
) -> None:
    config = configured(scope, [component], [environment])
    assert config is not None
    key = config.commands[action].lock_key(component, environment)
    assert parse_run_name(run_name(key, correlation_id)) == (key, correlation_id)
    record = LockRecord(key, 1, "req", Status.IN_PROGRESS, "U0ALICE", "alice", "2026-01-01T00:00:00Z", 0)
    assert action_of(record) is action  # a lock that lost its notes still names its command
    assert key in lock_keys(config)
    assert UnlockTarget.read(f"{key}:7", config) == UnlockTarget(key, 7)  # the Force unlock button knows it


def test_names_that_would_share_a_component_environment_key_are_refused_only_where_that_is_the_scope() -> None:
    components, environments = ["a-b", "a"], ["c", "b-c"]  # a-b in c and a in b-c: both a-b-c
    assert configured(LockScope.COMPONENT_ENVIRONMENT, components, environments) is None
    for scope in (LockScope.COMPONENT, LockScope.ENVIRONMENT, LockScope.GLOBAL):
        assert configured(scope, components, environments) is not None


def test_the_keys_of_each_scope() -> None:
    keys = {scope: schema.lock_key(Action.BUILD, scope, "router", "plt") for scope in LockScope}
    assert keys == {
        LockScope.COMPONENT_ENVIRONMENT: "build-router-plt",
        LockScope.COMPONENT: "build-router",
        LockScope.ENVIRONMENT: "build-plt",
        LockScope.GLOBAL: "build",
    }


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with running_world(monkeypatch) as world:
        yield world


def use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **commands: dict[str, Any]) -> Config:
    path = tmp_path / "chatops.toml"
    path.write_text(with_commands(SHIPPED_CONFIG.read_text(encoding="utf-8"), **commands), encoding="utf-8")
    monkeypatch.setenv("CHATOPS_CONFIG", str(path))
    return load_config(path, {})


def build(world: World, name: str, component: str, environment: str, *, user: str = "alice") -> None:
    envelope = world.envelope(name, Dispatch(Action.BUILD, component, environment), user=user)
    assert build_lambda.handler(sqs_event(envelope), Context()) == NO_FAILURES


def test_a_lock_per_environment_turns_away_another_component_there_until_the_run_ends(
    world: World, github: GitHubEvents, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(tmp_path, monkeypatch, build={"lock_scope": "environment"})
    build(world, "a", "router", "plt")
    [run] = world.dispatches()
    assert run.inputs["lock_key"] == "build-plt" and run.name.startswith("build-plt · cid=")

    build(world, "b", "api", "plt", user="bob")
    [busy] = world.replies_to("b")
    assert busy.text.startswith("⚠️ Build already in progress (router (plt) holds `build-plt`) — started by alice")
    build(world, "c", "api", "prod", user="carol")  # another environment: its own lock
    assert len(world.dispatches()) == 2

    world.github.complete_run(run.id, "success")
    github.post_all("completed", run.id)
    assert webhook_lambda.handler(github.queued(), Context()) == NO_FAILURES  # the run's name names build-plt
    lock = world.lock("build-plt")
    assert lock is not None and lock.status is Status.COMPLETED
    build(world, "d", "api", "plt", user="bob")
    assert world.dispatches()[-1].inputs["component"] == "api"


def test_one_lock_for_every_deploy_and_the_reaper_frees_it_from_the_run(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(tmp_path, monkeypatch, deploy={"lock_scope": "global"})
    envelope = world.envelope("a", Dispatch(Action.DEPLOY, "api", "prod"))
    assert build_lambda.handler(sqs_event(envelope), Context()) == NO_FAILURES
    other = world.envelope("b", Dispatch(Action.DEPLOY, "router", "plt"), user="bob")
    assert build_lambda.handler(sqs_event(other), Context()) == NO_FAILURES
    [run] = world.dispatches()
    assert world.replies_to("b")[0].text.startswith("⚠️ Deploy already in progress (api (prod) holds `deploy`)")

    world.github.complete_run(run.id, "failure")  # the webhook never comes
    assert reaper_lambda.handler(scheduled_event(), Context()) == {"locks": 1, "effects": {"released": 1}}
    lock = world.lock("deploy")
    assert lock is not None and lock.status is Status.FAILED


def test_a_command_that_requires_no_lock_dispatches_every_request_at_once_and_says_nothing_of_locks(
    world: World, github: GitHubEvents, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = use(tmp_path, monkeypatch, build={"requires_lock": False})
    assert not config.locks(Action.BUILD) and config.locks(Action.DEPLOY)
    build_router_plt = Dispatch(Action.BUILD, "router", "plt")
    assert acknowledgement(build_router_plt, config.locks(Action.BUILD)).endswith("starting the workflow…")

    build(world, "a", "router", "plt")
    build(world, "b", "router", "plt", user="bob")

    first, second = world.dispatches()
    assert first.inputs["lock_token"] == second.inputs["lock_token"] == "0"  # no lock has token 0
    assert world.lock("build-router-plt") is None
    for name, run in (("a", first), ("b", second)):
        [started] = world.replies_to(name)
        assert started.text == f"🔨 Building router (plt)… <{run.html_url}|run {run.id}>"  # no "switched off"
    world.github.complete_run(first.id, "success")
    github.post_all("completed", first.id)
    assert webhook_lambda.handler(github.queued(), Context()) == NO_FAILURES  # no lock to free: nothing to do
    assert world.lock("build-router-plt") is None


def test_an_unknown_scope_or_a_lock_switch_that_is_not_a_flag_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "chatops.toml"
    shipped = SHIPPED_CONFIG.read_text(encoding="utf-8")
    path.write_text(with_commands(shipped, deploy={"lock_scope": "team"}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r": commands\.deploy\.lock_scope: expected one of component-environment, "):
        load_config(path, {})
    path.write_text(with_commands(shipped, build={"requires_lock": "no"}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r": commands\.build\.requires_lock: expected true or false, not 'no'$"):
        load_config(path, {})
