"""One parser of node names: ``Node.from_name`` reads back every ``Node.name`` (and iit's ``hook_result`` alias)."""

from hypothesis import given
from hypothesis import strategies as st

from interventions.nodes import Node


@given(st.integers(0, 99), st.integers(0, 99), st.booleans())
def test_every_name_reads_back(layer, head, attn):
    node = Node(layer, "attn", head) if attn else Node(layer, "mlp")
    assert Node.from_name(node.name) == node
    assert Node.from_name(" " + node.name + " ", in_circuit=True) == Node(node.layer, node.kind, node.head, True)


def test_aliases_and_non_nodes():
    assert Node.from_name("blocks.1.attn.hook_result[2]") == Node(1, "attn", 2)
    for name in ("blocks.1.attn.hook_z", "blocks.1.attn.hook_q[2]", "blocks.0.hook_resid_pre", "blocks.0.mlp.hook_pre", "hook_embed"):
        assert Node.from_name(name) is None, name
