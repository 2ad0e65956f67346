"""Fixtures: the artifacts (Powertools bundled, and left to the layer), and the program deployed under mocks once
per stack file (``Pulumi.<stack>.yaml``) with an artifact that matches it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from infra import package
from tests.infra.stack import Deployment, deploy, stack_config, stack_files

Deploy = Callable[..., Deployment]


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Mapping[str, Path]:
    """``bundled`` and ``layer`` artifacts, built once from this work tree."""
    folder = tmp_path_factory.mktemp("artifacts")
    return {
        "bundled": package.build(folder / "bundled" / "lambda.zip", bundle_powertools=True),
        "layer": package.build(folder / "layer" / "lambda.zip", bundle_powertools=False),
    }


@pytest.fixture(scope="session")
def deploy_stack(artifacts: Mapping[str, Path]) -> Deploy:
    """Deploy ``stack`` (its file's config, with ``overrides``; ``None`` removes a key) on the matching artifact;
    ``secrets``: keys (without ``chatops:``) set as stack secrets, ``plain``: the same keys set without
    ``--secret``."""

    def run(
        stack: str,
        *,
        secrets: Mapping[str, str] | None = None,
        plain: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Deployment:
        config: dict[str, Any] = stack_config(stack)
        config.update({f"chatops:{key}": value for key, value in {**(secrets or {}), **(plain or {})}.items()})
        for key, value in overrides.items():
            if value is None:
                config.pop(f"chatops:{key}", None)
            else:
                config[f"chatops:{key}"] = value
        kind = "layer" if "chatops:powertoolsLayerVersion" in config else "bundled"
        config.setdefault("chatops:artifact", str(artifacts[kind]))
        return deploy(stack, config, secret_keys=[f"chatops:{key}" for key in secrets or {}])

    return run


@pytest.fixture(scope="session", params=sorted(stack_files()))
def deployment(request: pytest.FixtureRequest, deploy_stack: Deploy) -> Deployment:
    """The program as each stack file configures it."""
    stack: str = request.param
    return deploy_stack(stack)
