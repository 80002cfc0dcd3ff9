"""The bar a SIIT card is tested under: its protocol, the pass bar, the numerical tolerance and liveness."""

# Test protocol of a card. 2: IIA and SIIA with sources of every length >= the base's, bar per node.
# 3: protocol 2 plus the joint bar (bystanders resampled together, in subsets and all at once; the
# circuit resampled together changes the output as the HL model's does).
# The registry ships only cards of this protocol that passed.
CARD_PROTOCOL = 3
# Pass bar for held-out accuracy, IIA and SIIA (fractions of non-BOS cells).
PASS_BAR = 0.99
# A numerical prediction counts as correct when within this of the tracr output.
NUM_TOL = 0.02
# An out-of-circuit node is live when the input-dependent variance of what it writes into the
# residual stream (``input_variance(node_write(...))``: variance across inputs at each position,
# so a purely positional output counts as constant) is at least this fraction of the median
# in-circuit node's. 0.05 of the variance is ~22% of the standard deviation: resampling such a
# node moves the residual stream by an input-dependent amount comparable to what circuit nodes
# write, so mean and resample ablation of it differ measurably. Fixed before any model was
# trained; a trained hinge (floor 0.25) keeps a 5x margin. For scale: reverse's in-circuit
# length head, constant within one input length, scores 0.000.
LIVE_THRESHOLD = 0.05
