"""The benchmark runs, and every lock operation it counts costs the one request the design promises.

Structure and request counts only: nothing here depends on how fast the machine is.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.bench.locks import main
from workers.local.motoserver import LOCAL_CREDENTIALS

ONE_REQUEST = ("acquire-win", "acquire-lose", "acquire-reentered", "release", "extend", "force-release", "check")


@pytest.fixture(autouse=True)
def local_credentials(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in LOCAL_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE", "AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)
    yield


@pytest.mark.timeout(120)
def test_the_benchmark_runs_and_counts_one_request_per_operation(capsys: pytest.CaptureFixture[str]) -> None:
    result = main(["--rounds", "1", "--contenders", "8"])

    requests = {row["operation"]: row["requests"] for row in result["operations"]}
    for operation in ONE_REQUEST:
        assert requests[operation] == 1, (operation, requests)
    calls = {row["operation"]: row["calls"] for row in result["operations"]}
    assert calls["check"] == "GetItem"
    assert all(calls[operation] == "UpdateItem" for operation in ONE_REQUEST if operation != "check")
    assert requests["list (3 keys)"] == requests["list (250 keys)"] == 1  # both fit one 1 MB Scan page
    # with a queue: a blind write is refused and decided again from the item it returns; one from a read is one
    assert calls["acquire-join (--queue)"] == calls["release (hand-off, blind)"] == "UpdateItem x2"
    assert requests["release (hand-off, from a read)"] == requests["release (watchers told, from a read)"] == 1
    assert calls["dequeue"] == calls["watch"] == "GetItem + UpdateItem"

    contention = result["contention"]
    assert (contention["contenders"], contention["rounds"]) == (8, 1)
    for method in ("lockcore", "raw"):
        row = contention["methods"][method]
        assert len(row["wall_ms"]) == 1 and row["winners_per_round"] == 1
        assert row["requests_per_round"] == [8]  # one request per contender, no retries on loopback
    assert contention["ratio"] > 0
    assert result["memory"]["cycles_per_second"] > 0
    assert result["machine"]["cpu_count"]

    printed = capsys.readouterr().out
    assert "| acquire-win | 1 | UpdateItem | Acquired |" in printed
    assert "ratio lockcore / raw" in printed
