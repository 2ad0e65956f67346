from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws

from tests.lockcore.stores import moto_server_process
from workers.local.motoserver import LOCAL_CREDENTIALS


@pytest.fixture(autouse=True, scope="session")
def local_credentials() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in LOCAL_CREDENTIALS.items():
            patch.setenv(name, value)
        for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
            patch.delenv(name, raising=False)
        yield


@pytest.fixture(scope="module")
def in_process_aws(local_credentials: None) -> Iterator[None]:
    """moto in this process (requests to AWS's own host names never leave it). Per module, not per session: a
    mock_aws still open would swallow the resets of every later test's own mock_aws, and their state would leak."""
    with mock_aws():
        yield


@pytest.fixture(scope="session")
def moto_server(local_credentials: None) -> Iterator[str]:
    """A serialised moto server in a subprocess, reached over HTTP."""
    with moto_server_process() as url:
        yield url
