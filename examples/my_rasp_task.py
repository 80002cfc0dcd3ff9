"""Your own RASP program as a task: `pytest benchmarks --task-module examples/my_rasp_task.py`."""
from tracr.compiler import lib
from tracr.rasp import rasp

from tasks.rasp import dyck_sampler, rasp_task


def frac_a():  # built lazily: tracr and jax load only when the task is made
    return lib.make_frac_prevs(rasp.tokens == "a")


PAIRS = ["()"]
_, balanced_or_not = dyck_sampler(PAIRS)  # the shipped Dyck sampler: half balanced words, half uniform

TASKS = [
    rasp_task("my_frac_a", frac_a, vocab=["a", "b", "c"], max_len=5, output="numerical", family="my_rasp"),
    rasp_task("my_dyck", lambda: lib.make_shuffle_dyck(PAIRS), vocab=list("()"), max_len=4, family="my_rasp",
              sample=balanced_or_not),
]
