"""Fixtures of the bad-input tests: the valid inputs every case starts from, made once with the
CLI, copied into each test's own folder (which becomes the current directory)."""

import os
from pathlib import Path

import pytest
from badinput_cases import copy_fixtures, make_fixtures
from hypothesis import HealthCheck, settings

# CI runs a few dozen examples per property; `HYPOTHESIS_PROFILE=long` runs more locally.
settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "long",
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def made(tmp_path_factory) -> Path:
    return make_fixtures(tmp_path_factory.mktemp("badinput") / "fixtures")


@pytest.fixture
def work(made, tmp_path, monkeypatch) -> Path:
    """A fresh copy of the fixtures as the current directory."""
    folder = copy_fixtures(made, tmp_path / "case")
    monkeypatch.chdir(folder)
    return folder
