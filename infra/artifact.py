"""The code every function runs: the artifact of ``nox -s package`` plus this stack's ``chatops.toml``.

The program does not build the artifact (``nox -s package`` does, reproducibly); it checks it — Powertools
bundled exactly when the stack does not name the public layer — and writes a copy with the stack's
configuration added (``build/lambda-<stack>.zip``, as deterministic as the original, so an unchanged stack
uploads nothing new).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import pulumi

from infra import command_config, package
from infra.roster import WORKERS
from infra.settings import Settings

POWERTOOLS_LAYER: Final = (
    "arn:aws:lambda:{region}:017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-x86_64:{version}"
)


@dataclass(frozen=True)
class LambdaCode:
    archive: pulumi.Archive
    layers: tuple[str, ...]


def lambda_code(settings: Settings, region: str) -> LambdaCode:
    manifest = package.manifest(settings.artifact)
    bundled = manifest.get("powertools") == "bundled"
    layer = settings.powertools_layer_version
    if layer is None and not bundled:
        raise package.PackageError(
            f"{settings.artifact} leaves Powertools to the layer, but chatops:powertoolsLayerVersion is not set: "
            f"set it, or build with `nox -s package -- --stack {settings.stack}`"
        )
    if layer is not None and bundled:
        raise package.PackageError(
            f"{settings.artifact} bundles Powertools, and the stack also names layer version {layer}: "
            f"build with `nox -s package -- --stack {settings.stack}`"
        )
    modules = set(package.handler_modules(settings.artifact))
    for worker in WORKERS:
        if worker.handler_module not in modules:
            pulumi.log.warn(f"{worker.name}: {worker.handler_module} is not in {settings.artifact} yet")
    rendered = command_config.render(settings).encode()
    stacked = settings.artifact.with_name(f"{settings.artifact.stem}-{settings.stack}.zip")
    package.with_files(settings.artifact, stacked, {command_config.PATH_IN_ARTIFACT: rendered})
    layers = () if layer is None else (POWERTOOLS_LAYER.format(region=region, version=layer),)
    return LambdaCode(archive=pulumi.FileArchive(str(stacked)), layers=layers)
