"""SIIT tasks: trained transformers whose circuit is fixed by Strict Interchange Intervention Training.

``model.py``: LL config, build, correspondence, aux readouts, patching hooks, save / load;
``evaluate.py``: the card metrics (accuracy, IIA, SIIA, liveness) and the bar. The trainer, which
writes the weights and their cards, is the package ``siit_training`` (``python -m siit_training
--task <name|all>``); the benchmark never imports it.

A *low-level* (LL) HookedTransformer (more heads, gelu, no layer norm, compressed residual) is
trained so that for every node of the compiled tracr (*high-level*, HL) model one LL node at the
same layer implements it (interchange interventions on the pair agree), while every other LL
node is irrelevant to the main output under resample ablation. Ground truth is therefore
``resample``: in-circuit = the LL nodes of the correspondence.

Bystanders are kept *live*: an auxiliary readout (``aux.W_U``, not part of the benchmarked
model) is trained to predict input-dependent targets (previous token, next token, "previous
token equals this one") from a forward in which every in-circuit node is resample-ablated, so
that information has to flow through the bystanders; a hinge term keeps each bystander's
input-dependent output variance above a floor. ``liveness`` below measures it.

Weights ship as ``tasks/weights/siit/<task>.safetensors`` (safetensors only) with a JSON card.
The model is a plain HookedTransformer: ``model(tokens)`` gives the main output. Bases come in
batches of one length (no PAD), as the benchmark feeds them; sources may be longer, and a patch
takes the source's first ``len(base) + 1`` positions. Same-length sources cannot vary anything
that is constant within one length, so a model trained and checked only with them can compute
length in a "bystander" unseen, and its length-computing circuit nodes pass IIA trivially.
Cards (protocol ``CARD_PROTOCOL``) therefore measure IIA and SIIA per node with sources of
every length >= the base's (``eval_pairs(cross_length=True)``, same length included): the
interchanges the benchmark's reference ``resample`` makes. The bar (``passes_bar``) reads the
weakest node, and (protocol 3) the circuit jointly: with every bystander resampled together, and
with each of 32 seeded bystander subsets (sizes from one to all), the output keeps its prediction
in >= 99% of cells; with the circuit resampled together it changes as often as the HL model's
does (within ``COMPLETENESS_TOL``). Per-node strict training alone leaves the bystanders free to
carry a distributed copy of the answer that only a joint ablation reveals; ``--joint-strict``
resamples a random bystander subset per strict row. Training uses the same interchanges for its
IIT, strict and aux rows.

``SIIT_VARIANTS`` (``model.py``) adds models built on a program under another name whose
correspondence maps one HL node to a *list* of LL nodes (``hist_backup``: a backup pair). An
interchange patches the whole set; extra training rows teach each member alone (its partners
zero-ablated) to implement the node, and the card's bar adds each member's backup IIA and backup
accuracy. They form the family ``siit_backup`` (single-node ablation under-reports each member by
design) and declare the set in the task's ``joint_sets``.
"""

from tasks.siit.evaluate import COMPLETENESS_TOL, bar_score, cell_correct, eval_pairs, evaluate, passes_bar  # noqa: F401
from tasks.siit.model import (ARCH_OVERRIDES, CARD_PROTOCOL, CARD_SCHEMA, CARD_VERSION, LIVE_THRESHOLD,  # noqa: F401
                              LL_CONFIG_SCHEMA, NUM_TOL, OPTIONAL_CARD_SCHEMA, PASS_BAR, SIIT_VARIANTS, WEIGHTS_DIR, SiitLoadError,
                              aux0_sizes, aux0_targets, aux_block_ce, aux_logit_accuracy, aux_sizes, aux_targets, build_ll,
                              BACKUP_FAMILY, CAUSAL_FAMILY, COMPILED_FAMILY, DEEP_FAMILY, NORM_FAMILY, REALISM_FAMILIES,
                              correspondence, family_of, is_causal, is_compiled, layers_of, input_variance, ll_circuit, ll_config_for, ll_members,
                              ll_nodes, load, node_write, patch_hooks, paths, program_of, redundant_of, unit_name,
                              prefix_cache, save, shipped, siit_task, validate_card)
