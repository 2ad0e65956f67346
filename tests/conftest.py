"""Hypothesis profiles: `ci` (fast, the default in `nox`), `dev`, and `soak` (used by `nox -s soak`)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

# CI runs one fixed set of examples (reproducible, never red by chance): `nox -s soak` and the dev profile explore.
settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
    derandomize=True,
)
settings.register_profile("dev", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Mutation testing asks only "does some test fail?": no shrinking, no example database, fewer examples.
settings.register_profile(
    "mutants",
    max_examples=60,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
settings.register_profile(
    "soak", max_examples=5_000, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
