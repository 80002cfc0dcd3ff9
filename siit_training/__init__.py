"""The trainer of the SIIT models: ``python -m siit_training --task <name|all>``.

What is trained and why is in ``tasks/siit/__init__.py``; the benchmark loads the shipped
weights through ``tasks.siit`` and never imports this package (``tests/test_imports.py``).

``train.py``: ``SiitConfig`` and the training loop; ``warm_start.py``: starting from tracr's
compiled weights; ``card.py``: the JSON card written next to the weights; ``__main__.py``: the
command.
"""
