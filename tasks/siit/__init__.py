"""SIIT tasks: trained transformers whose circuit is fixed by Strict Interchange Intervention Training.

``variants.py``: which models exist (programs, variants, families); ``architecture.py``: LL config,
build, correspondence; ``readouts.py``: the aux readouts' targets and losses; ``patching.py``: interchange
hooks and node writes; ``protocol.py``: the bar's constants; ``cards.py``: weights + cards (save,
validate, load, the shipped set, the task); ``evaluate.py``: the card metrics (accuracy, IIA, SIIA,
liveness) and the bar. The trainer, which
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
every length >= the base's (``eval_pairs(cross_length=True)``, same length included), each source's
length drawn by the suite's one interchange draw: the interchanges the benchmark's reference
``resample`` makes, from the same distribution. The bar (``passes_bar``) reads the
weakest node, and (protocol 3) the circuit jointly: with every bystander resampled together, and
with each of 32 seeded bystander subsets (sizes from one to all), the output keeps its prediction
in >= 99% of cells; with the circuit resampled together it changes as often as the HL model's
does (within ``COMPLETENESS_TOL``). Per-node strict training alone leaves the bystanders free to
carry a distributed copy of the answer that only a joint ablation reveals; ``--joint-strict``
resamples a random bystander subset per strict row. Training uses the same interchanges for its
IIT, strict and aux rows.

``SIIT_VARIANTS`` (``variants.py``) adds models built on a program under another name whose
correspondence maps one HL node to a *list* of LL nodes (``hist_backup``: a backup pair). An
interchange patches the whole set; extra training rows teach each member alone (its partners
zero-ablated) to implement the node, and the card's bar adds each member's backup IIA and backup
accuracy. They form the family ``siit_backup`` (single-node ablation under-reports each member by
design) and declare the set in the task's ``joint_sets``.
"""

from tasks.base import ll_members, unit_name  # noqa: F401
from tasks.siit.architecture import (LL_ACT_FNS, LL_ATTENTION, LL_NORMS, build_ll, correspondence, is_causal,  # noqa: F401
                                     ll_circuit, ll_config_for, ll_nodes)
from tasks.siit.cards import (CARD_SCHEMA, CARD_VERSION, FAILED_DIR, LL_CONFIG_SCHEMA, OPTIONAL_CARD_SCHEMA,  # noqa: F401
                              WEIGHTS_DIR, SiitLoadError, is_weight, load, paths, save, shipped, siit_task, validate_card)
from tasks.siit.evaluate import COMPLETENESS_TOL, bar_score, cell_correct, eval_pairs, evaluate, passes_bar  # noqa: F401
from tasks.siit.patching import input_variance, node_write, patch_hooks, prefix_cache  # noqa: F401
from tasks.siit.protocol import CARD_PROTOCOL, LIVE_THRESHOLD, NUM_TOL, PASS_BAR  # noqa: F401
from tasks.siit.readouts import (aux0_sizes, aux0_targets, aux_block_ce, aux_logit_accuracy, aux_sizes,  # noqa: F401
                                 aux_targets)
from tasks.siit.variants import (ARCH_OVERRIDES, BACKUP_FAMILY, CAUSAL_FAMILY, COMPILED_FAMILY, DEEP_FAMILY,  # noqa: F401
                                 NORM_FAMILY, REALISM_FAMILIES, SIIT_VARIANTS, family_of, is_compiled, layers_of,
                                 program_of, redundant_of)
