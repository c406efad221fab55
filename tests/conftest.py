"""Shared fixtures. Data under ../shared/data is optional: tests that need it skip without it."""

from __future__ import annotations

import pathlib

import jax
import pytest

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def x64():
    """Run the test in float64, as gradient checks need; restore float32 afterwards."""
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


@pytest.fixture
def shared_data() -> pathlib.Path:
    """The project's ../shared/data folder, or a skip naming what is missing."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA
