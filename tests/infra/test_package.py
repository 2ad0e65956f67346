"""The Lambda artifact: reproducible to the byte, pure Python, and every handler importable from it alone."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from infra import package
from infra.roster import WORKERS, Worker
from tests.infra.conftest import Deploy
from tests.infra.stack import ROOT

# What the Python Lambda runtime has besides the standard library (the boto3 it ships, and its dependencies).
RUNTIME_MODULES = ("boto3", "botocore", "jmespath", "s3transfer", "urllib3", "dateutil", "six")

IMPORT_EVERY_HANDLER = """
import importlib, json, os, sys
sys.path.append(os.environ["LAMBDA_RUNTIME_SHIM"])
task_root = os.getcwd()
answers = {}
for handler in json.loads(os.environ["HANDLERS"]):
    module_name, _, attribute = handler.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        assert callable(getattr(module, attribute)), f"{handler} is not callable"
        assert module.__file__.startswith(task_root), f"{module_name} came from {module.__file__}"
        answers[handler] = "ok"
    except Exception as error:
        answers[handler] = f"{type(error).__name__}: {error}"
import slack_sdk, aws_lambda_powertools, typing_extensions
import zoneinfo
zoneinfo.reset_tzpath([])  # as on Lambda: no system time-zone database, only the tzdata package
import tzdata
from workers.protocol.config import current_config
config = current_config()
print(json.dumps({
    "zone": str(zoneinfo.ZoneInfo("Australia/Lord_Howe").utcoffset(__import__("datetime").datetime(2026, 1, 1))),
    "tzdata": tzdata.__file__,
    "handlers": answers,
    "origins": {m.__name__: m.__file__ for m in (slack_sdk, aws_lambda_powertools, typing_extensions)},
    "components": list(config.components),
    "lock_enabled": config.lock_enabled,
    "sys_path": sys.path,
}))
"""


def _runtime_shim(folder: Path) -> Path:
    """A folder holding only what the Lambda runtime provides beyond the standard library (links to here)."""
    folder.mkdir()
    for name in RUNTIME_MODULES:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, name
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (folder / source.name).symlink_to(source)
    return folder


@pytest.fixture(scope="module")
def imported(deploy_stack: Deploy, artifacts: Mapping[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The bundled artifact, with the plt stack's chatops.toml added by the program, unzipped as /var/task is and
    imported by a fresh interpreter that sees the standard library, the runtime's boto3, and nothing else."""
    deploy_stack("plt", powertoolsLayerVersion=None)  # writes lambda-plt.zip beside the bundled artifact
    stacked = artifacts["bundled"].with_name("lambda-plt.zip")
    folder = tmp_path_factory.mktemp("lambda")
    task_root = folder / "task"
    with zipfile.ZipFile(stacked) as archive:
        archive.extractall(task_root)
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_DEFAULT_REGION": "ca-central-1",
        "CHATOPS_CONFIG": str(task_root / "chatops.toml"),
        "ENABLE_DISTRIBUTED_LOCK": "false",
        "LAMBDA_RUNTIME_SHIM": str(_runtime_shim(folder / "runtime")),
        "HANDLERS": json.dumps([worker.handler for worker in WORKERS]),
    }
    # -S: no site-packages (nothing installed here is visible); -E: no PYTHON* variables; cwd: the task root.
    finished = subprocess.run(
        [sys.executable, "-S", "-E", "-c", IMPORT_EVERY_HANDLER],
        cwd=task_root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    answer = json.loads(finished.stdout.strip().splitlines()[-1])
    answer["task_root"] = str(task_root)
    return answer


@pytest.mark.parametrize("worker", WORKERS, ids=lambda worker: worker.name)
def test_every_handler_imports_from_the_artifact_alone(imported: Any, worker: Worker) -> None:
    if not (ROOT / (worker.handler_module.replace(".", "/") + ".py")).exists():
        pytest.skip(f"{worker.handler_module} is not written yet")
    assert imported["handlers"][worker.handler] == "ok"


def test_the_fresh_interpreter_saw_neither_the_repository_nor_site_packages(imported: Any) -> None:
    assert str(ROOT) not in imported["sys_path"]
    assert not any("site-packages" in path for path in imported["sys_path"])
    for origin in imported["origins"].values():
        assert origin.startswith(imported["task_root"])


def test_the_artifact_carries_the_stacks_configuration(imported: Any) -> None:
    assert imported["components"] == ["router", "api"]
    assert imported["lock_enabled"] is False


def test_named_time_zones_come_from_the_artifacts_tzdata(imported: Any) -> None:
    assert imported["tzdata"].startswith(imported["task_root"])
    assert imported["zone"] == "11:00:00"  # Lord Howe in its summer


def test_every_runtime_dependency_is_bundled_or_in_the_runtime() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    shipped = {name.lower().replace("_", "-") for name in package.BUNDLED + package.POWERTOOLS_DISTRIBUTIONS}
    for line in declared:
        wanted = Requirement(line).name.lower().replace("_", "-")
        assert wanted in shipped | package.IN_LAMBDA_RUNTIME, f"{wanted} would be missing on Lambda"


def test_two_builds_give_the_same_bytes(artifacts: Mapping[str, Path], tmp_path: Path) -> None:
    again = package.build(tmp_path / "again.zip", bundle_powertools=True)
    assert again.read_bytes() == artifacts["bundled"].read_bytes()
    overlaid = [package.with_files(again, tmp_path / f"{n}.zip", {"chatops.toml": b"x = 1\n"}) for n in (1, 2)]
    assert overlaid[0].read_bytes() == overlaid[1].read_bytes()


def test_entries_are_sorted_with_fixed_times_and_modes(artifacts: Mapping[str, Path]) -> None:
    with zipfile.ZipFile(artifacts["bundled"]) as archive:
        infos = archive.infolist()
    names = [info.filename for info in infos]
    assert names == sorted(names)
    assert all(info.date_time == (1980, 1, 1, 0, 0, 0) for info in infos)
    assert all(info.external_attr >> 16 == 0o100644 for info in infos)
    assert not [name for name in names if "__pycache__" in name or name.endswith((".pyc", "/RECORD"))]
    assert not [name for name in names if name.endswith(("direct_url.json", "INSTALLER"))]


def test_the_artifact_holds_our_code_and_not_the_local_stack(artifacts: Mapping[str, Path]) -> None:
    with zipfile.ZipFile(artifacts["bundled"]) as archive:
        names = set(archive.namelist())
    assert {"lockcore/__init__.py", "workers/handlers/router.py", "docs/chatops.toml", package.MANIFEST} <= names
    assert not [name for name in names if name.startswith(("workers/local/", "workers/cli/", "tests/", "infra/"))]
    assert not [name for name in names if name.startswith("boto3/") or name.endswith(package._COMPILED)]


def test_nothing_in_the_artifact_imports_moto_the_cli_or_the_local_stack(artifacts: Mapping[str, Path]) -> None:
    """What Lambda ships can never reach the tools around it: every import of every module of ours, read."""
    forbidden = ("moto", "workers.cli", "workers.local")
    offenders: list[str] = []
    with zipfile.ZipFile(artifacts["bundled"]) as archive:
        ours = [
            name for name in archive.namelist() if name.startswith(("workers/", "lockcore/")) and name.endswith(".py")
        ]
        assert "workers/handlers/build.py" in ours
        for name in ours:
            for imported in _imports(archive.read(name).decode()):
                if imported == forbidden[0] or imported.startswith(tuple(f"{f}." for f in forbidden) + forbidden[1:]):
                    offenders.append(f"{name} imports {imported}")
    assert offenders == []


def _imports(source: str) -> list[str]:
    """Every module an ``import`` or ``from … import`` names, at any depth of the module (deferred ones too)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.append(node.module)
            found.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_layer_artifact_leaves_powertools_out(artifacts: Mapping[str, Path]) -> None:
    with zipfile.ZipFile(artifacts["layer"]) as archive:
        names = archive.namelist()
    assert not [name for name in names if name.startswith(("aws_lambda_powertools", "typing_extensions"))]
    assert "slack_sdk/__init__.py" in names
    assert package.manifest(artifacts["layer"])["powertools"] == "layer"


def test_every_bundled_distribution_finds_its_requirements_bundled_or_in_the_runtime() -> None:
    bundled = {
        metadata.distribution(name).metadata["Name"].lower().replace("_", "-")
        for name in package.BUNDLED + package.POWERTOOLS_DISTRIBUTIONS
    }
    for name in package.BUNDLED + package.POWERTOOLS_DISTRIBUTIONS:
        for line in metadata.requires(name) or ():
            requirement = Requirement(line)
            if requirement.marker and not requirement.marker.evaluate({"extra": "", "python_version": "3.12"}):
                continue
            wanted = requirement.name.lower().replace("_", "-")
            assert wanted in bundled | package.IN_LAMBDA_RUNTIME, f"{name} needs {wanted}"


def test_the_program_refuses_an_artifact_that_does_not_match_the_powertools_setting(
    deploy_stack: Deploy, artifacts: Mapping[str, Path]
) -> None:
    with pytest.raises(Exception, match="leaves Powertools to the layer"):
        deploy_stack("plt", powertoolsLayerVersion=None, artifact=str(artifacts["layer"]))
    with pytest.raises(Exception, match="bundles Powertools"):
        deploy_stack("plt", artifact=str(artifacts["bundled"]))
    with pytest.raises(Exception, match="nox -s package"):
        deploy_stack("plt", artifact=str(artifacts["bundled"].parent / "missing.zip"))


def test_the_command_builds_as_the_stack_file_says(tmp_path: Path) -> None:
    assert package.main(["--output", str(tmp_path / "plt.zip"), "--stack", "plt"]) == 0
    layer = package.manifest(tmp_path / "plt.zip")["powertools"]
    assert layer == ("layer" if "powertoolsLayerVersion" in (ROOT / "Pulumi.plt.yaml").read_text() else "bundled")
