"""The ground floor: nodes (``nodes.py``), hook interventions (``hooks.py``), output measures
(``measures.py``) and method specs (``methodspec.py``).

``tasks``, ``ablations`` and ``abench`` import these modules; they import none of those packages
(``tests/test_imports.py``). This file imports nothing, so that ``methodspec`` can be read
without torch (the report reads method names).
"""
