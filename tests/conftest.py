"""Hypothesis runs the same examples every time (``derandomize``) and keeps no example database,
so the README test command gives the same verdict on every run and every clone. Explore new
examples with ``HYPOTHESIS_PROFILE=explore pytest tests``."""

import os

from hypothesis import settings

settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))
