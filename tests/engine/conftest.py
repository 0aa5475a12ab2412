"""Fixtures for every engine test."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(autouse=True)
def close_run_logs():
    """cmd_train adds a file handler for each run's engine.log; close them after the test."""
    before = list(logging.getLogger().handlers)
    yield
    for handler in logging.getLogger().handlers[:]:
        if handler not in before:
            logging.getLogger().removeHandler(handler)
            handler.close()
