"""The interchange, defined once (interventions/interchange.py): source lengths >= the base's, the base's positions of the source."""

import pytest
import torch

from interventions.interchange import source_lengths, source_prefix


def test_source_lengths_are_the_base_length_and_longer():
    assert source_lengths(3, [5, 2, 3, 4, 3]) == [3, 4, 5]
    assert source_lengths(6, range(2, 6)) == []


def test_source_prefix_lines_up_with_the_base_and_refuses_a_shorter_source():
    acts = torch.arange(2 * 6 * 3).reshape(2, 6, 3)
    assert torch.equal(source_prefix(acts, 4), acts[:, :4])
    with pytest.raises(ValueError, match="shorter than its base"):
        source_prefix(acts, 7)
