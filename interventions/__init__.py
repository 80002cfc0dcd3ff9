"""The ground floor: nodes, hook interventions and output measures.

``tasks``, ``ablations`` and ``abench`` import this package; it imports none of them
(``tests/test_imports.py``).
"""

from interventions.hooks import (  # noqa: F401
    DEFAULT_MAX_ROWS,
    ablated_outputs_batched,
    ablated_outputs_loop,
    ablated_outputs_sets_batched,
    ablated_outputs_sets_loop,
    clean_run,
    node_activation,
    replacing_hooks,
)
from interventions.measures import NUMERICAL_THRESHOLD, cell_changed, cell_divergence  # noqa: F401
from interventions.nodes import Node, all_nodes, resid_pre_name  # noqa: F401
