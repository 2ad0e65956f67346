"""``chatops config check [FILE]``: read a configuration against the schema the workers and the Pulumi program
share, and print it as it takes effect — every key, defaults filled in — or every problem, one line each (exit 1).

FILE is the workers' TOML (default ``$CHATOPS_CONFIG``, else ``docs/chatops.toml``), read with the environment's
overrides as a worker reads it (the output names those that applied); or a stack file, ``Pulumi.<stack>.yaml``,
whose ``chatops:`` keys are checked as ``pulumi preview`` checks them (PyYAML comes with the ``infra`` extra).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from workers.protocol import schema
from workers.protocol.config import ConfigError, check_config, config_path

VALID, INVALID = 0, 1


def add_parser(commands: Any) -> None:
    """``config check`` under the ``chatops`` parser's subcommands (``commands``: its ``add_subparsers()``)."""
    config = commands.add_parser("config", help="check a configuration file and show it with its defaults")
    actions = config.add_subparsers(dest="action", required=True)
    check = actions.add_parser(
        "check",
        help="check FILE against the schema; print the effective configuration, or every problem (exit 1)",
        description="Check a chatops TOML, or a Pulumi.<stack>.yaml, against the configuration schema: print the "
        "effective configuration (every key, defaults filled in), or every problem, one line each, and exit 1.",
    )
    check.add_argument(
        "file",
        nargs="?",
        metavar="FILE",
        help="a chatops TOML (default: $CHATOPS_CONFIG, else docs/chatops.toml) or a Pulumi.<stack>.yaml",
    )


def run(
    args: argparse.Namespace,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    environ = os.environ if environ is None else environ
    out, err = out or sys.stdout, err or sys.stderr
    path: str | None = args.file
    try:
        if path is not None and Path(path).suffix in {".yaml", ".yml"}:
            checked, text = _check_stack(Path(path))
        else:
            checked = check_config(path, environ)
            text = ""
    except ConfigError as error:
        print(str(error), file=err)
        return INVALID
    if checked.errors:
        for line in checked.errors:
            print(line, file=err)
        return INVALID
    if not text:
        header = [f"The effective configuration of {config_path(path, environ)}: every key, defaults filled in."]
        header += [f"{name} overrides its key here." for name in checked.overridden]
        text = schema.render_toml(checked.values, header)
    print(text, end="", file=out)
    return VALID


def _check_stack(path: Path) -> tuple[schema.Checked, str]:
    """A stack file's ``chatops:`` keys, checked; and the effective ones as the file would write them."""
    stack = path.name.removeprefix("Pulumi.").rsplit(".", 1)[0]
    source = f"Pulumi stack {stack} ({path})"
    try:
        import yaml  # noqa: PLC0415 — the infra extra's; only a stack file needs it
    except ImportError:
        raise ConfigError(f"{source}: reading a stack file needs PyYAML: pip install 'chatops-locks[infra]'") from None
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as error:
        raise ConfigError(f"{source}: cannot read it: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML: {' '.join(str(error).split())}") from None
    config = document.get("config") if isinstance(document, dict) else None
    if not isinstance(config, dict):
        raise ConfigError(f"{source}: no config: mapping")
    checked = schema.check(schema.stack_values(config), schema.Form.STACK, source)
    effective: dict[str, Any] = {
        f"{schema.STACK_NAMESPACE}:{key}": value
        for key, value in schema.in_form(checked.values, schema.Form.STACK).items()
    }
    header = f"# The effective chatops: configuration of {path}: every key, defaults filled in.\n"
    return checked, header + yaml.safe_dump({"config": effective}, sort_keys=False, allow_unicode=True)
