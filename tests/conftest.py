"""Shared fixtures: the real credit-card data (never copied into the repository)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parents[1]

# Property tests explore new random examples on every local run; CI (.ci/run sets
# HYPOTHESIS_PROFILE=ci) replays a fixed set, so a landing never hinges on one draw. A
# failure found locally is replayed from .hypothesis/ until fixed.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_configure(config) -> None:
    """Make a relative ``$TORMENTOR_DATA`` absolute: tests start processes in other folders."""
    if os.environ.get("TORMENTOR_DATA"):
        os.environ["TORMENTOR_DATA"] = str(Path(os.environ["TORMENTOR_DATA"]).resolve())


def credit_folder() -> Path | None:
    """The folder holding creditcard.csv: $TORMENTOR_DATA, else ../shared/data/credit.

    Both are absolute: :func:`pytest_configure` resolved the variable, and REPO is resolved.
    """
    candidates = []
    if os.environ.get("TORMENTOR_DATA"):
        candidates.append(Path(os.environ["TORMENTOR_DATA"]))
    candidates.append(REPO.parent / "shared" / "data" / "credit")
    for folder in candidates:
        if (folder / "creditcard.csv").is_file():
            return folder
    return None


@pytest.fixture(scope="session")
def credit_path() -> Path:
    folder = credit_folder()
    if folder is None:
        pytest.fail("creditcard.csv not found: set TORMENTOR_DATA to the folder that holds it")
    return folder


@pytest.fixture(scope="session")
def credit(credit_path):
    from tormentor.engine.data import load_credit

    return load_credit(credit_path, seed=1)


@pytest.fixture(scope="session")
def centralised_train_error(credit) -> float:
    from tormentor.engine.centralised import fit_logistic_regression, zero_one_error

    w = fit_logistic_regression(credit.X_train, credit.y_train)
    return zero_one_error(w, credit.X_train, credit.y_train)
