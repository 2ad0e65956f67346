"""What every benchmark here shares: refusing to print numbers of a wrong result, and saying what machine they
were measured on."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

Result = dict[str, Any]


class BenchFailure(Exception):
    """The thing measured did not do what it must; the numbers would mean nothing."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise BenchFailure(message)


def machine() -> Result:
    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(affinity(0)) if affinity is not None else os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(terse=True),
        "boto3": version("boto3"),
        "botocore": version("botocore"),
        "moto": version("moto"),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def machine_line(result: Result) -> str:
    """The last line under a benchmark's tables: the machine, its load, and how long the run took."""
    facts = result["machine"]
    return (
        f"Machine: {facts['cpu_count']} CPUs ({facts['usable_cpus']} usable), {facts['python']}, "
        f"{facts['platform']}; boto3 {facts['boto3']}, botocore {facts['botocore']}, moto {facts['moto']}. "
        + (f"Load average {facts['load_average']:.2f} at the end. " if facts["load_average"] is not None else "")
        + f"Benchmark took {result['seconds']:.1f} s."
    )


def run(measure: Callable[[], Result], markdown: Callable[[Result], str], *, as_json: bool) -> Result:
    """Measure, add the machine and the duration, print (markdown or JSON) and return the results; exit 1 with one
    line, and no numbers, when what was measured went wrong."""
    started = time.perf_counter()
    try:
        result = measure()
    except BenchFailure as failure:
        print(f"bench: wrong result, no numbers: {failure}", file=sys.stderr)
        raise SystemExit(1) from None
    result["machine"] = machine()
    result["seconds"] = time.perf_counter() - started
    print(json.dumps(result, indent=2) if as_json else markdown(result))
    return result
