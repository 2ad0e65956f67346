"""The Lambda artifact: one reproducible zip for every function (``nox -s package``).

Same inputs, same bytes: entries sorted by name, every timestamp 1980-01-01 00:00:00, every file mode 0644, no
directory entries, no ``__pycache__``, no install-time metadata (``RECORD``, ``INSTALLER``, ``direct_url.json``).
The inputs are this repository's ``lockcore``, ``workers`` (less the local stack and the CLI) and
``docs/chatops.toml``, and the installed copies of the pure-Python distributions the Lambda runtime lacks
(:data:`BUNDLED`; Powertools only when not taken from the public layer). The Python 3.12 runtime already has
boto3 and its dependencies (:data:`IN_LAMBDA_RUNTIME`). A compiled extension is refused: this zip must run on
any architecture.

``chatops-artifact.json`` inside the zip names what went in (the distributions' versions, Powertools bundled or
not); the Pulumi program reads it to refuse an artifact that does not match the stack's Powertools setting.

    python -m infra.package --output build/lambda.zip               # Powertools bundled
    python -m infra.package --output build/lambda.zip --stack plt   # as Pulumi.plt.yaml says (layer or bundled)
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Final

REPOSITORY_ROOT: Final = Path(__file__).resolve().parent.parent
MANIFEST: Final = "chatops-artifact.json"
POWERTOOLS: Final = "aws_lambda_powertools"

#: Our code: (path in the repository, path in the zip).
SOURCES: Final = ("lockcore", "workers", "docs/chatops.toml")
#: Parts of ``workers`` that no handler imports: the embedded local stack, and the command line with its demos.
EXCLUDED: Final = ("workers/local/", "workers/cli/")

#: Distributions bundled in the zip (tzdata: the runtime has no time-zone database for ``zoneinfo``). Powertools and
#: its one dependency outside the runtime go only when bundled.
BUNDLED: Final = ("slack_sdk", "tzdata")
POWERTOOLS_DISTRIBUTIONS: Final = ("aws_lambda_powertools", "typing_extensions")
#: What the Python Lambda runtime provides (boto3 and its dependencies): never bundled.
IN_LAMBDA_RUNTIME: Final = frozenset(
    {"boto3", "botocore", "jmespath", "s3transfer", "urllib3", "python-dateutil", "six"}
)

_FIXED_TIME: Final = (1980, 1, 1, 0, 0, 0)
_FILE_MODE: Final = 0o100644  # a regular file, rw-r--r--
_INSTALL_METADATA: Final = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"})
_COMPILED: Final = (".so", ".pyd", ".dylib", ".dll")


class PackageError(Exception):
    """The artifact cannot be built or used; the message says which file or distribution, and what to do."""


# ------------------------------------------------------------------------------------------------ inputs
def collect(root: Path = REPOSITORY_ROOT, *, bundle_powertools: bool = True) -> dict[str, bytes]:
    """Every file of the artifact: its name in the zip and its bytes."""
    entries: dict[str, bytes] = {}
    for source in SOURCES:
        path = root / source
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            name = file.relative_to(root).as_posix()
            if _wanted(name):
                entries[name] = file.read_bytes()
    distributions = BUNDLED + (POWERTOOLS_DISTRIBUTIONS if bundle_powertools else ())
    versions: dict[str, str] = {}
    for distribution in distributions:
        found, version = _distribution_files(distribution)
        versions[distribution] = version
        for name, content in found.items():
            if name in entries:
                raise PackageError(f"{distribution}: {name} is also provided by another input")
            entries[name] = content
    manifest = {"distributions": versions, "powertools": "bundled" if bundle_powertools else "layer"}
    entries[MANIFEST] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    return entries


def _wanted(name: str) -> bool:
    parts = PurePosixPath(name).parts
    if "__pycache__" in parts or name.endswith((".pyc", ".pyo")):
        return False
    return not any(name == excluded or name.startswith(excluded) for excluded in EXCLUDED)


def _distribution_files(name: str) -> tuple[dict[str, bytes], str]:
    try:
        distribution = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        raise PackageError(f"{name} is not installed here: `pip install -e '.[infra]'` first") from None
    files: dict[str, bytes] = {}
    for record in distribution.files or ():
        relative = PurePosixPath(record.as_posix())
        if relative.parts[0] == ".." or not _wanted(str(relative)) or relative.name in _INSTALL_METADATA:
            continue  # scripts outside site-packages, caches, and what pip wrote about this machine
        if relative.name.endswith(_COMPILED):
            raise PackageError(f"{name} has a compiled extension ({relative}): only pure Python may be bundled")
        files[str(relative)] = Path(str(distribution.locate_file(record))).read_bytes()
    return files, distribution.version


# ----------------------------------------------------------------------------------------------- the zip
def zip_bytes(entries: Mapping[str, bytes]) -> bytes:
    """The deterministic zip of ``entries``: sorted, fixed times and modes, deflated."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.external_attr = _FILE_MODE << 16
            info.create_system = 3  # Unix, so the mode above is what unzip applies
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entries[name], compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    return buffer.getvalue()


def write(path: Path, content: bytes) -> Path:
    """Write ``content`` to ``path`` unless it already holds exactly that (its mtime then stays put)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_bytes() != content:
        path.write_bytes(content)
    return path


def build(output: Path, root: Path = REPOSITORY_ROOT, *, bundle_powertools: bool = True) -> Path:
    """Build the artifact at ``output``."""
    return write(output, zip_bytes(collect(root, bundle_powertools=bundle_powertools)))


def read_entries(artifact: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(artifact) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def manifest(artifact: Path) -> Mapping[str, object]:
    """``chatops-artifact.json`` of an artifact; :class:`PackageError` when it is not one of ours."""
    try:
        with zipfile.ZipFile(artifact) as archive:
            loaded: Mapping[str, object] = json.loads(archive.read(MANIFEST))
            return loaded
    except FileNotFoundError:
        raise PackageError(f"no Lambda artifact at {artifact}: run `nox -s package` first") from None
    except (KeyError, zipfile.BadZipFile, json.JSONDecodeError):
        raise PackageError(f"{artifact} is not an artifact of `nox -s package` (no {MANIFEST})") from None


def with_files(artifact: Path, output: Path, files: Mapping[str, bytes]) -> Path:
    """A copy of ``artifact`` with ``files`` added (or replaced), as deterministic as the original."""
    entries = read_entries(artifact)
    entries.update(files)
    return write(output, zip_bytes(entries))


def handler_modules(artifact: Path) -> Iterator[str]:
    """The modules the artifact holds (``workers.flows.build``), for checking the roster's handlers."""
    with zipfile.ZipFile(artifact) as archive:
        for name in archive.namelist():
            if name.endswith(".py"):
                yield name[: -len(".py")].replace("/", ".").removesuffix(".__init__")


# ------------------------------------------------------------------------------------------- the command
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.package", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=REPOSITORY_ROOT / "build" / "lambda.zip")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--powertools", choices=("bundle", "layer"), help="bundle Powertools, or leave it to the layer")
    group.add_argument("--stack", help="do as Pulumi.<stack>.yaml says (chatops:powertoolsLayerVersion)")
    arguments = parser.parse_args(argv)
    bundle = arguments.powertools != "layer"
    if arguments.stack:
        bundle = _stack_layer_version(REPOSITORY_ROOT / f"Pulumi.{arguments.stack}.yaml") is None
    try:
        path = build(arguments.output, bundle_powertools=bundle)
    except PackageError as error:
        print(f"package: {error}", file=sys.stderr)
        return 1
    print(f"{path} ({path.stat().st_size} bytes, Powertools {'bundled' if bundle else 'from the layer'})")
    return 0


def _stack_layer_version(stack_file: Path) -> object:
    import yaml  # noqa: PLC0415 — only this option reads YAML (PyYAML comes with pulumi)

    document = yaml.safe_load(stack_file.read_text(encoding="utf-8")) or {}
    return (document.get("config") or {}).get("chatops:powertoolsLayerVersion")


if __name__ == "__main__":
    raise SystemExit(main())
