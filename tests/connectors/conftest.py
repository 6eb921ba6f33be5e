"""Fixtures of the connector tests."""
import pytest


@pytest.fixture(autouse=True)
def _connector_threads_stopped(no_thread_leaks):
    """Every connector test ends with its connector threads gone (tests/conftest.py)."""
    yield
