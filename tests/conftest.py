"""Hypothesis runs the same examples every time (``derandomize``) and keeps no example database,
so the README test command gives the same verdict on every run and every clone. Explore new
examples with ``HYPOTHESIS_PROFILE=explore pytest tests``."""

import os

import pytest
import torch
from hypothesis import settings

settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is much faster than two contending
    ones. A module opts in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``; restored after it."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
