"""Every check this project has, one session each. `nox` runs the default ones: lint, then the type check beside
the tests (``checks``: ``types`` and ``tests`` at once)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "checks"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def types(session: nox.Session) -> None:
    session.install("-e", ".[types]")
    session.run("mypy")


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite with the fast Hypothesis profile (the CI profile)."""
    session.install("-e", ".[test]")
    _pytest(session)


@nox.session
def checks(session: nox.Session) -> None:
    """``types`` and ``tests`` at once, as ``nox`` runs them: mypy on one core beside pytest's workers (mypy spends
    most of its minute reading pulumi_aws; the tests wait on sockets and clocks as much as on the CPU)."""
    session.install("-e", ".[types,test]")
    with tempfile.TemporaryFile() as said:
        mypy = subprocess.Popen(  # noqa: S603 — the session's own mypy, no outside input
            [str(Path(str(session.bin)) / "mypy")], stdout=said, stderr=subprocess.STDOUT
        )
        try:
            _pytest(session)
        finally:
            typed = mypy.wait()
            said.seek(0)
            session.log("mypy --strict: " + said.read().decode("utf-8", "replace").strip())
    if typed != 0:
        session.error("mypy --strict found the problems above")


def _pytest(session: nox.Session) -> None:
    # Twice as many workers (pytest-xdist) as cores: the simulations keep a core busy, while the local-stack and
    # HTTP tests mostly wait.
    workers = ("-n", str(2 * (os.cpu_count() or 1))) if not session.posargs else ()
    env = {"HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "ci")}
    session.run("pytest", *workers, *session.posargs, env=env)


@nox.session
def soak(session: nox.Session) -> None:
    """Every simulation for a time budget: `nox -s soak -- --minutes 20` (default 20; the split in tests/soak.py)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "tests.soak", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Requests per lock operation, contended acquires against raw conditional writes; the router's cold start
    against boto3's, /build end to end on the local stack (1 and 100 at once), and App Home publishes per build.
    docs/benchmarks.md says more."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "tests.bench.locks", *session.posargs)
    session.run("python", "-m", "tests.bench.serve")
    session.run("python", "-m", "tests.bench.home")


@nox.session
def mutants(session: nox.Session) -> None:
    """Mutation testing of lockcore (slow; not in CI). The score goes in docs/lock.md."""
    session.install("-e", ".[test]", "mutmut>=3.3")
    session.run("mutmut", "run", *session.posargs, success_codes=[0, 1, 2], env={"HYPOTHESIS_PROFILE": "mutants"})
    session.run("mutmut", "results")


@nox.session
def serve(session: nox.Session) -> None:
    """The whole system on this machine, until Ctrl-C: `nox -s serve -- --port 3000`."""
    session.install("-e", ".[local]")
    session.run("chatops", "serve", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: `chatops demo` on the embedded local stack."""
    session.install("-e", ".[local]")
    session.run("chatops", "demo", *session.posargs)


@nox.session
def package(session: nox.Session) -> None:
    """The Lambda zip for `pulumi up`, reproducibly: `nox -s package -- --stack plt` (default: build/lambda.zip)."""
    session.install("-e", ".[infra]")
    session.run("python", "-m", "infra.package", *session.posargs)
