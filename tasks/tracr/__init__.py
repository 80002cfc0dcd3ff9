"""tracr ground-truth tasks: the RASP programs and their input distributions (``programs.py``), and
their compilation with tracr, exact conversion to ``HookedTransformer`` and weight cache
(``compiled.py``: ``tracr_task(name)``)."""
