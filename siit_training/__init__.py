"""The trainer of the SIIT models: ``python -m siit_training --task <name|all>``.

What is trained and why is in ``tasks/siit/__init__.py``; the benchmark loads the shipped
weights through ``tasks.siit`` and never imports this package (``tests/test_imports.py``).

``config.py``: ``SiitConfig`` (every hyperparameter, one command-line option each);
``losses.py``: the output losses; ``objective.py``: a run's models, nodes and random streams and
the loss of one batch; ``reinit.py``: redrawing a dead bystander; ``checkpoint.py``: the
resumable run state; ``loop.py``: ``TrainingRun`` (step, evaluate, select, checkpoint) and
``train``; ``warm_start.py``: starting from tracr's compiled weights; ``card.py``: the JSON
card written next to the weights; ``__main__.py``: the command.
"""
