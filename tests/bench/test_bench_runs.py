"""The benchmarks run: every lock operation they count costs the one request the design promises, and every
slash command they time was answered, replied to and dispatched once.

Structure and request counts only: nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bench import home, serve
from tests.bench.locks import main
from workers.local.motoserver import LOCAL_CREDENTIALS

BENCHMARKS_DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
HEADS = ("| what | median (ms) |", "| what | import (ms) |", "| load | requests |")
"""The first cells of the serve benchmark's three tables, as docs/benchmarks.md shows them."""
HOME_HEAD = "| schedule | viewers | stream batches |"
ONE_VIEWER = r"\| (while a refresh publishes|spaced out) \| 1 \|"
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


@pytest.mark.timeout(300)
def test_the_serve_benchmark_runs_and_counts_every_request_it_times(capsys: pytest.CaptureFixture[str]) -> None:
    result = serve.main(["--rounds", "1", "--warm", "3", "--sequential", "2", "--burst", "8"])

    assert [row["what"] for row in result["cold_import"]["rows"]] == list(serve.IMPORTS)
    assert next(r["ratio"] for r in result["cold_import"]["rows"] if r["what"] == serve.BASELINE) == 1
    first = result["first_ack"]["rows"]
    assert (first["router"]["queued"], first["boto3"]["queued"]) == (1, 1), "one message per fresh interpreter"
    assert first["router"]["ratio"] > 0
    assert (result["warm_ack"]["n"], result["warm_ack"]["queued"]) == (3, 3)
    e2e = result["end_to_end"]
    for row, count in ((e2e["one_at_a_time"], 2), (e2e["at_once"], 8)):
        assert (row["requests"], row["acknowledged"], row["building"]) == (count, count, count)
        assert row["ack"]["n"] == row["reply"]["n"] == count
        assert row["ack"]["p50_ms"] <= row["ack"]["p99_ms"] <= row["ack"]["max_ms"]
    assert e2e["dispatches"] == 10, "one dispatch per lock"

    printed = capsys.readouterr().out
    assert "| `import workers.handlers.router` |" in printed
    assert "| all at once, over HTTP | 8 | 8 | 8 |" in printed
    documented = [line for line in BENCHMARKS_DOC.read_text(encoding="utf-8").splitlines() if line.startswith(HEADS)]
    assert len(documented) == 3 and all(line in printed for line in documented), "docs/benchmarks.md shows its tables"


def test_the_documented_commands_are_the_benchmarks_with_their_defaults() -> None:
    text = BENCHMARKS_DOC.read_text(encoding="utf-8")
    modules = set(re.findall(r"python -m (tests\.bench\.[a-z_]+)", text))
    assert modules == {"tests.bench.locks", "tests.bench.serve", "tests.bench.home"}
    assert all(importlib.util.find_spec(module) is not None for module in modules)
    [spelled_out] = re.findall(r"python -m tests\.bench\.serve((?: --[a-z-]+ [0-9]+)+)", text)
    assert vars(serve.parse(spelled_out.split())) == vars(serve.parse([])), "the defaults, spelled out"
    [viewers] = re.findall(r"python -m tests\.bench\.home --viewers ([0-9 ]+)", text)
    assert vars(home.parse(["--viewers", *viewers.split()])) == vars(home.parse([])), "the defaults, spelled out"


@pytest.mark.timeout(300)
def test_the_home_benchmark_counts_one_refresh_per_batch_before_and_fewer_after(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = home.main(["--viewers", "1", "2"])

    rows = {(row["schedule"], row["viewers"]): row for row in result["rows"]}
    assert set(rows) == {(schedule, n) for schedule in home.SCHEDULES for n in (1, 2)}
    for (schedule, viewers), row in rows.items():
        before, after = row["before"], row["after"]
        assert before["refreshes"] == row["batches"] >= 4, "the baseline: a refresh for each write of the build"
        assert before["publishes"] == row["batches"] * viewers
        assert after["publishes"] == after["refreshes"] * viewers
        if schedule == "spaced out":
            assert after == {**before, "identical": after["identical"]}, "nothing to coalesce"
        else:  # the first refresh, the one pending while it published, the run's end
            assert after["refreshes"] == 3
    printed = capsys.readouterr().out
    lines = BENCHMARKS_DOC.read_text(encoding="utf-8").splitlines()
    documented = [line for line in lines if line.startswith(HOME_HEAD)]
    assert len(documented) == 1 and documented[0] in printed, "docs/benchmarks.md shows the table's head"
    counted = [line for line in lines if re.match(ONE_VIEWER, line)]
    assert len(counted) == 2, "a row for one viewer, each schedule"
    assert all(line.rsplit("|", 2)[0] in printed for line in counted), "the counts documented are the counts"
