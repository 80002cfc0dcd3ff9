"""Optimal ablation: the constant that disturbs the model least, learned per node.

Source: Li & Janson 2024 (arXiv:2409.09951); MIB ``oa.py``. The constant ``c*`` minimises the
mean over fit inputs of KL(clean || ablated) (categorical) or the squared error (numerical),
BOS excluded. Adam starts from the mean, so the result is never worse than mean ablation on
the fit data (the best value seen, the start included, is kept). Each node stops on its own
when it has not improved for ``patience`` steps; a node whose mean ablation already costs
nothing is done at step 0. All active nodes are optimised together in the batched passes of
``interventions/hooks.py`` (each node's loss depends only on its own constant).

Deviation from MIB (lr 1e-3, <= 1000 steps): lr 0.02 and <= 100 steps, on at most
``max_examples`` fit inputs, to keep the CPU benchmark within minutes.

The fit runs in float64 on a float64 copy of the model and of the fit data (the constants are
returned in the data's dtype). In float32 the optimiser's path and its discrete choices (the best
step kept, early stopping) followed the CPU's float kernels: the same run on another CPU learned
other constants and moved node effects by up to 0.11. In float64 those choices no longer depend
on the fit's own rounding; what is left comes from the float32 activations it starts from
(measured on three tasks: identical under ATEN_CPU_CAPABILITY=avx2, node effects within 0.005
under MKL_CBWR=COMPATIBLE).
"""

from __future__ import annotations

import copy
import inspect
from types import SimpleNamespace

import torch

from interventions.hooks import ablated_outputs_batched
from interventions.measures import cell_divergence
from ablations.base import AblationMethod, NodeBatch, param, register
from ablations.task_data import TaskData
from ablations.basic import _fill


@register("optimal")
class OptimalAblation(AblationMethod):
    """Learned constant per node (``optimal``) minimising KL / MSE to the clean model.

    Source: Li & Janson 2024; MIB ``oa.py`` (Adam from the mean, early stopping).
    """

    per_position = False

    def __init__(self, lr: float = 0.02, max_steps: int = 100, patience: int = 10, tol: float = 1e-3, max_examples: int = 64):
        self.lr, self.max_steps = param(lr, "lr", low=0, low_open=True), param(max_steps, "max_steps", int, low=0)
        self.patience, self.tol = param(patience, "patience", int, low=1), param(tol, "tol", low=0)
        self.max_examples = param(max_examples, "max_examples", int, low=1)

    @property
    def name(self) -> str:
        """``optimal``, or with the parameters that differ from the defaults: ``optimal[lr=0.05]`` (two fits, two rows)."""
        defaults = {k: p.default for k, p in inspect.signature(OptimalAblation.__init__).parameters.items() if k != "self"}
        changed = [f"{k}={v:g}" for k, v in self.get_params().items() if v != defaults[k]]
        return f"{self.base_name}[{','.join(changed)}]" if changed else self.base_name

    def _start(self, data: TaskData, name: str) -> torch.Tensor:
        if self.per_position:
            return torch.stack([a.mean(0) for a in data.per_position(name)])
        return data.cells(name).mean(0)

    @staticmethod
    def _float64_view(data: TaskData, rows: list[int]) -> SimpleNamespace:
        """What ``_losses`` reads of ``data`` (the first ``rows[g]`` examples of each group), in float64,
        with a float64 copy of the model (the task's own model is not touched)."""
        def f64(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to(torch.float64)

        model = copy.deepcopy(data.model).to(torch.float64)
        model.cfg.dtype = torch.float64
        return SimpleNamespace(
            model=model, output=data.output, n_groups=data.n_groups,
            outputs=[f64(o[:n]) for o, n in zip(data.outputs, rows)],
            resid_pre=[{layer: f64(r[:n]) for layer, r in rp.items()} for rp, n in zip(data.resid_pre, rows)],
            writes=[{layer: {k: f64(v[:n]) for k, v in w.items()} for layer, w in ws.items()} for ws, n in zip(data.writes, rows)]
            if data.writes else None)

    def _losses(self, data: SimpleNamespace, nodes: list, consts: dict[str, torch.Tensor], rows: list[int]) -> torch.Tensor:
        """``[len(nodes)]``: each node's mean loss over the non-BOS cells of the first ``rows[g]``
        examples of each group, with its constant written in."""
        total = torch.zeros(len(nodes), device=data.outputs[0].device)
        cells = 0
        for g in range(data.n_groups):
            n = rows[g]
            clean = data.outputs[g][:n]
            pos = clean.shape[1]

            def value(node, pos=pos, n=n):
                c = consts[node.name]
                return c[:pos].expand(n, pos, c.shape[-1]) if c.dim() == 2 else c.expand(n, pos, c.shape[-1])

            resid = {layer: r[:n] for layer, r in data.resid_pre[g].items()}
            writes = {layer: {k: v[:n] for k, v in w.items()} for layer, w in data.writes[g].items()} if data.writes else None
            outs = ablated_outputs_batched(data.model, resid, nodes, value, writes=writes)
            logp = self._clean_logp[g] if data.output == "categorical" else None  # once per fit, not per node and step
            total = total + torch.stack([cell_divergence(clean, outs[x.name], data.output, logp)[:, 1:].sum() for x in nodes])
            cells += n * (pos - 1)
        return total / cells

    def fit(self, data: TaskData) -> "OptimalAblation":
        per_group = max(2, self.max_examples // max(1, data.n_groups))
        rows = [min(per_group, t.shape[0]) for t in data.tokens]
        view = self._float64_view(data, rows)
        self._clean_logp = [out.log_softmax(-1) for out in view.outputs]
        dtype = data.outputs[0].dtype
        consts = {n.name: self._start(data, n.name).to(torch.float64).requires_grad_(True) for n in data.nodes}
        opt = torch.optim.Adam(list(consts.values()), lr=self.lr)
        params = list(view.model.parameters())
        for p in params:
            p.requires_grad_(False)
        try:
            with torch.enable_grad():
                losses = self._losses(view, data.nodes, consts, rows)
            self.start_loss_ = {n.name: l for n, l in zip(data.nodes, losses.detach().tolist())}
            best_loss = dict(self.start_loss_)
            best = {k: v.detach().clone() for k, v in consts.items()}
            stale = {n.name: 0 for n in data.nodes}
            active = [n for n in data.nodes if best_loss[n.name] > 0]
            steps = 0
            while active and steps < self.max_steps:
                steps += 1
                opt.zero_grad()
                with torch.enable_grad():
                    losses.sum().backward()
                opt.step()
                with torch.enable_grad():
                    losses = self._losses(view, active, consts, rows)
                for node, loss in zip(active, losses.detach().tolist()):
                    name = node.name
                    stale[name] = 0 if loss < best_loss[name] * (1 - self.tol) else stale[name] + 1
                    if loss < best_loss[name]:
                        best_loss[name], best[name] = loss, consts[name].detach().clone()
                keep = [i for i, n in enumerate(active) if stale[n.name] < self.patience and best_loss[n.name] > 0]
                active = [active[i] for i in keep]
                losses = losses[keep]
        finally:
            del self._clean_logp
        self.constants_ = {k: v.to(dtype) for k, v in best.items()}
        self.loss_, self.steps_ = best_loss, steps
        return self

    def ablate(self, batch: NodeBatch) -> torch.Tensor:
        return _fill(self.constants_[batch.node.name], batch)


@register("optimal_position")
class OptimalPositionAblation(OptimalAblation):
    """Learned constant per node and position, minimising KL / MSE to the clean model.

    Source: Li & Janson 2024 (position-wise variant); MIB ``oa.py``.
    """

    per_position = True
