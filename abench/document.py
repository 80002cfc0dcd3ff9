"""The suite's records: a ``Row`` (one task x method result), a ``MethodSummary`` (one method pooled over
a family's tasks), an ``AttributionSummary`` (an estimator beside its exact method) and the
``Leaderboard`` document that holds them; the reports (``abench.report``) render a ``Leaderboard``.

All are frozen dataclasses; ``to_json`` gives the exact ``leaderboard.json`` form (what the reports,
the journal and every outside reader see) and ``from_json`` reads it back, checking the shape every
consumer relies on (``DocumentError`` names the place and what is wrong). Code that changes a row or
a document makes a new one (``dataclasses.replace``): no function mutates what it is handed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal, Mapping

from abench.report.metrics import GATED, METRICS

Status = Literal["ok", "failed"]
STATUSES = ("ok", "failed")
# the row metrics a baseline comparison reads as numbers (``abench.compare``); a summary checks all of its own
ROW_NUMBERS = tuple(m.row for m in GATED if m.row)
# a row's identity and status, first in its JSON; everything it measured follows, then its nodes
ROW_HEAD = ("task", "family", "ground_truth", "method", "method_base", "params", "status", "error")
# a method summary's per-metric keys, table-driven: every METRICS entry with a row key, its mean over tasks and
# (``ci``) its 95% interval, in METRICS order; its timings, written after them (absent from a stripped baseline)
MEAN_KEYS = tuple(k for m in METRICS if m.row for k in (m.key, m.ci_key) if k)
SECONDS_KEYS = ("fit_seconds", "effect_seconds", "circuit_seconds", "seconds")


class DocumentError(ValueError):
    """A row or leaderboard in JSON form that does not have the shape the suite reads."""


def _number(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _frozen(d: Mapping | None) -> Mapping:
    return MappingProxyType(dict(d or {}))


def _interval(v) -> bool:
    """A 95% interval as the JSON holds it: ``[low, high]`` (two numbers), or null."""
    return v is None or (isinstance(v, (list, tuple)) and len(v) == 2 and all(_number(x) and x is not None for x in v))


def _pair(v) -> tuple[float, float] | None:
    return None if v is None else tuple(v)


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


@dataclass(frozen=True)
class NodeEffect:
    """One node's effect in one row: ``effect`` the row's convention (fraction of cells changed, or
    an estimator's estimate of it), ``continuous`` its graded counterpart (KL or squared error).
    An attribution row's node also holds the exact change of the estimator's metric (``exact``,
    ``exact_signed``; ``abench.estimator_rows``)."""

    name: str
    in_circuit: bool
    effect: float
    continuous: float | None = None
    exact: float | None = None
    exact_signed: float | None = None

    def to_json(self) -> dict:
        out = {"name": self.name, "in_circuit": self.in_circuit, "effect": self.effect, "continuous": self.continuous}
        if self.exact is not None or self.exact_signed is not None:
            out.update(exact=self.exact, exact_signed=self.exact_signed)
        return out

    @classmethod
    def from_json(cls, d: Mapping, where: str = "node") -> "NodeEffect":
        """The node effect of a JSON object; ``DocumentError`` naming ``where`` when a field is wrong."""
        if not isinstance(d, Mapping) or not isinstance(d.get("name"), str) or not isinstance(d.get("in_circuit"), bool):
            raise DocumentError(f"{where}: a node needs a string 'name' and a boolean 'in_circuit', got {str(d)[:80]}")
        for k in ("effect", "continuous", "exact", "exact_signed"):
            if not _number(d.get(k)) or (k == "effect" and d.get(k) is None):
                raise DocumentError(f"{where} ({d['name']}): {k} must be a number{'' if k == 'effect' else ' or null'}, got {d.get(k)!r}")
        unknown = sorted(set(d) - {"name", "in_circuit", "effect", "continuous", "exact", "exact_signed"})
        if unknown:
            raise DocumentError(f"{where} ({d['name']}): unknown node fields {unknown}")
        return cls(**dict(d))


@dataclass(frozen=True)
class JointEffect:
    """A node set a task declares (``Task.joint_sets``), ablated together in one row
    (``abench.effects.joint_effects``): its joint ``effect`` (and ``continuous``) beside each member's
    single-node effect (``single_effects``, by node name)."""

    name: str
    nodes: tuple[str, ...]
    effect: float
    continuous: float | None
    single_effects: Mapping[str, float]

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "single_effects", _frozen(self.single_effects))

    def to_json(self) -> dict:
        return {"name": self.name, "nodes": list(self.nodes), "effect": self.effect, "continuous": self.continuous,
                "single_effects": dict(self.single_effects)}

    @classmethod
    def from_json(cls, d: Mapping, where: str = "joint effect") -> "JointEffect":
        if not isinstance(d, Mapping) or not isinstance(d.get("name"), str) or not isinstance(d.get("nodes"), list):
            raise DocumentError(f"{where}: a joint effect needs a string 'name' and a list 'nodes', got {str(d)[:80]}")
        if d.get("effect") is None or not _number(d.get("effect")) or not _number(d.get("continuous")):
            raise DocumentError(f"{where} ({d['name']}): effect must be a number (continuous a number or null)")
        single = d.get("single_effects")
        if not isinstance(single, Mapping) or not all(v is not None and _number(v) for v in single.values()):
            raise DocumentError(f"{where} ({d['name']}): single_effects must map node names to numbers")
        return cls(name=d["name"], nodes=d["nodes"], effect=d["effect"], continuous=d.get("continuous"), single_effects=single)


@dataclass(frozen=True)
class Row:
    """One (task, method) result.

    ``measures``: everything measured, by the row keys of ``abench.report.metrics.METRICS`` and the
    rest (separability, effect convention, circuit-level numbers, attribution agreement, joint
    effects, timings), in the order they were measured; ``nodes``: per node its ``NodeEffect``
    (JSON objects given are read as ones), absent (``None``) on a failed row;
    ``ground_truth_check``: ``passed`` / ``failed`` / ``None``, set by ``leaderboard.build``.
    """

    task: str
    family: str
    ground_truth: str
    method: str
    status: Status
    method_base: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    measures: Mapping[str, Any] = field(default_factory=dict)
    nodes: tuple[NodeEffect, ...] | None = None
    ground_truth_check: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise DocumentError(f"row {self.task}-{self.method}: status must be one of {STATUSES}, got {self.status!r}")
        object.__setattr__(self, "params", _frozen(self.params))
        object.__setattr__(self, "measures", _frozen(self.measures))
        if self.nodes is not None:
            where = f"row {self.task}-{self.method}: node"
            object.__setattr__(self, "nodes", tuple(n if isinstance(n, NodeEffect) else NodeEffect.from_json(n, where)
                                                    for n in self.nodes))

    @property
    def key(self) -> tuple[str, str]:
        return self.task, self.method

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def get(self, name: str, default=None):
        """A measured value by its row key (``auroc``, ``faithfulness``, ``fit_seconds``...)."""
        return self.measures.get(name, default)

    @property
    def joint_effects(self) -> tuple[JointEffect, ...]:
        """The declared node sets ablated together (``measures["joint_effects"]``); empty without any."""
        where = f"row {self.task}-{self.method}: joint effect"
        return tuple(j if isinstance(j, JointEffect) else JointEffect.from_json(j, where)
                     for j in self.measures.get("joint_effects") or ())

    def to_json(self) -> dict:
        out = {"task": self.task, "family": self.family, "ground_truth": self.ground_truth, "method": self.method,
               "method_base": self.method_base, "params": _plain(self.params), "status": self.status, "error": self.error}
        out.update(_plain(self.measures))
        if self.nodes is not None:
            out["nodes"] = [n.to_json() for n in self.nodes]
            if "joint_effects" in self.measures:  # after the nodes it combines
                out["joint_effects"] = out.pop("joint_effects")
        out["ground_truth_check"] = self.ground_truth_check
        return out

    @classmethod
    def from_json(cls, d: Mapping, where: str = "row") -> "Row":
        """The row of a JSON object; ``DocumentError`` naming ``where`` when a field the suite reads is wrong."""
        if not isinstance(d, Mapping) or not all(isinstance(d.get(k), str) for k in ("task", "method", "family")):
            raise DocumentError(f"{where} needs string fields 'task', 'method' and 'family', got {str(d)[:80]}")
        name = f"{where} ({d['task']}-{d['method']})"
        for m in ROW_NUMBERS:
            if not _number(d.get(m)):
                raise DocumentError(f"{name}: {m} must be a number or null, got {d[m]!r}")
        status = d.get("status", "ok")
        if status not in STATUSES:
            raise DocumentError(f"{name}: status must be one of {STATUSES}, got {status!r}")
        nodes = d.get("nodes")
        if nodes is not None and not (isinstance(nodes, list) and all(isinstance(n, Mapping) for n in nodes)):
            raise DocumentError(f"{name}: nodes must be a list of objects")
        measures = {k: v for k, v in d.items() if k not in ROW_HEAD and k not in ("nodes", "ground_truth_check")}
        joint = measures.get("joint_effects")
        if joint is not None and not isinstance(joint, list):
            raise DocumentError(f"{name}: joint_effects must be a list of objects")
        for j in joint or ():
            JointEffect.from_json(j, f"{name}: joint effect")
        return cls(task=d["task"], family=d["family"], ground_truth=str(d.get("ground_truth", "")), method=d["method"],
                   status=status, method_base=d.get("method_base"), params=d.get("params") or {}, error=d.get("error"),
                   measures=measures, nodes=nodes, ground_truth_check=d.get("ground_truth_check"))

    def checked(self, check: str | None) -> "Row":
        """This row with its task's ground-truth check result."""
        return replace(self, ground_truth_check=check)


@dataclass(frozen=True)
class GroundTruthCheck:
    """A task's ground-truth check (``abench.ground_truth.check_task``): whether its reference method
    separates the circuit, every in-circuit unit has its high-level node's effect, and the circuit
    holds jointly (faithfulness, completeness against the HL model); ``reasons`` for a failure.
    ``nodes``: per LL node its resample effect (and its HL node's); ``units``: what the separation
    and the HL comparison score (every node alone, a redundant set by its joint effect)."""

    task: str
    reference_method: str
    hl_tolerance: float
    passed: bool
    reasons: tuple[str, ...]
    auroc: float | None
    gap: float | None
    max_abs_diff: float | None
    faithfulness_bar: float
    faithfulness: float
    completeness_ll: float
    completeness_hl: float
    completeness_abs_diff: float
    nodes: tuple[Mapping[str, Any], ...] = ()
    units: tuple[Mapping[str, Any], ...] = ()

    def __post_init__(self) -> None:
        for name in ("reasons", "nodes", "units"):
            object.__setattr__(self, name, tuple(_frozen(v) if isinstance(v, Mapping) else v for v in getattr(self, name)))

    @property
    def joint_units(self) -> list[Mapping[str, Any]]:
        """The units that are redundant sets (scored by their joint effect)."""
        return [u for u in self.units if "members" in u]

    def to_json(self) -> dict:
        out = {f: _plain(getattr(self, f)) for f in self.__dataclass_fields__}
        out["joint_units"] = _plain(self.joint_units)
        return out

    @classmethod
    def from_json(cls, d: Mapping, where: str = "ground-truth check") -> "GroundTruthCheck":
        if not isinstance(d, Mapping) or not isinstance(d.get("task"), str) or not isinstance(d.get("passed"), bool):
            raise DocumentError(f"{where}: a ground-truth check needs a string 'task' and a boolean 'passed', got {str(d)[:80]}")
        if not isinstance(d.get("reasons"), list) or not all(isinstance(r, str) for r in d["reasons"]):
            raise DocumentError(f"{where} ({d['task']}): reasons must be a list of strings")
        known = set(cls.__dataclass_fields__)
        missing = sorted(k for k in known - {"nodes", "units"} if k not in d)
        if missing:
            raise DocumentError(f"{where} ({d['task']}): missing fields {missing}")
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class MethodSummary:
    """One method pooled over a family's tasks (``abench.leaderboard.summarize``), over its ok rows.

    ``pooled_auroc``: AUROC over every task's nodes together, with its 95% bootstrap interval, or
    ``None`` and why not (``pooled_auroc_reason``). ``means``: per ``METRICS`` entry with a row key,
    its mean over tasks (``mean_gap``...) and, for one with ``ci``, the 95% interval over tasks
    (``mean_faithfulness_ci95``), by summary key in ``METRICS`` order (``MEAN_KEYS``). The timings are
    sums over the ok rows; ``None`` where the document has none (a baseline saved without timings).
    ``get`` reads any of them by its JSON key, as ``METRICS`` names them.
    """

    method: str
    n_tasks: int = 0
    n_failed: int = 0
    pooled_auroc: float | None = None
    pooled_auroc_ci95: tuple[float, float] | None = None
    pooled_auroc_reason: str | None = None
    means: Mapping[str, Any] = field(default_factory=dict)
    fit_seconds: float | None = None
    effect_seconds: float | None = None
    circuit_seconds: float | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        unknown = [k for k in self.means if k not in MEAN_KEYS]
        if unknown:
            raise DocumentError(f"method summary {self.method}: unknown metric keys {unknown} (METRICS has {list(MEAN_KEYS)})")
        object.__setattr__(self, "pooled_auroc_ci95", _pair(self.pooled_auroc_ci95))
        object.__setattr__(self, "means", _frozen({k: _pair(v) if k.endswith("_ci95") else v for k, v in self.means.items()}))

    def get(self, key: str, default=None):
        """A value by its summary key (``pooled_auroc``, ``mean_gap``, ``mean_faithfulness_ci95``, ``seconds``...);
        ``default`` where it is absent or null."""
        if key in MEAN_KEYS:
            v = self.means.get(key)
        elif key in _SUMMARY_HEAD or key in SECONDS_KEYS:
            v = getattr(self, key)
        else:
            v = None
        return default if v is None else v

    def to_json(self) -> dict:
        out = {"method": self.method, "n_tasks": self.n_tasks, "n_failed": self.n_failed, "pooled_auroc": self.pooled_auroc,
               "pooled_auroc_ci95": _plain(self.pooled_auroc_ci95), "pooled_auroc_reason": self.pooled_auroc_reason}
        out.update(_plain(self.means))
        out.update({k: v for k in SECONDS_KEYS if (v := getattr(self, k)) is not None})
        return out

    @classmethod
    def from_json(cls, d: Any, where: str = "method summary") -> "MethodSummary":
        """The summary of a JSON object; ``DocumentError`` naming ``where`` and the method when a field is wrong.
        Only ``method`` is required (an older or hand-written summary gives the rest as absent)."""
        if not isinstance(d, Mapping) or not isinstance(d.get("method"), str):
            raise DocumentError(f"{where}: every entry needs a string 'method', got {str(d)[:80]}")
        name = f"{where} method {d['method']}"
        unknown = [k for k in d if k not in _SUMMARY_HEAD and k not in MEAN_KEYS and k not in SECONDS_KEYS]
        if unknown:
            raise DocumentError(f"{name}: unknown summary fields {unknown}")
        for k in ("n_tasks", "n_failed"):
            if k in d and not _count(d[k]):
                raise DocumentError(f"{name}: {k} must be a count (an integer >= 0), got {d[k]!r}")
        for k, v in d.items():
            if k.endswith("_ci95"):
                if not _interval(v):
                    raise DocumentError(f"{name}: {k} must be [low, high] or null, got {v!r}")
            elif k in SECONDS_KEYS and (v is None or not _number(v)):
                raise DocumentError(f"{name}: {k} must be a number, got {v!r}")
            elif k not in ("method", "n_tasks", "n_failed", "pooled_auroc_reason") and not _number(v):
                raise DocumentError(f"{name}: {k} must be a number or null, got {v!r}")
        if not isinstance(d.get("pooled_auroc_reason"), (str, type(None))):
            raise DocumentError(f"{name}: pooled_auroc_reason must be a string or null, got {d['pooled_auroc_reason']!r}")
        return cls(method=d["method"], n_tasks=d.get("n_tasks", 0), n_failed=d.get("n_failed", 0),
                   pooled_auroc=d.get("pooled_auroc"), pooled_auroc_ci95=d.get("pooled_auroc_ci95"),
                   pooled_auroc_reason=d.get("pooled_auroc_reason"), means={k: v for k, v in d.items() if k in MEAN_KEYS},
                   **{k: d.get(k) for k in SECONDS_KEYS})


_SUMMARY_HEAD = ("method", "n_tasks", "n_failed", "pooled_auroc", "pooled_auroc_ci95", "pooled_auroc_reason")


@dataclass(frozen=True)
class AttributionSummary:
    """One attribution estimator of a family beside its exact method (``abench.leaderboard.attribution_summary``,
    ``abench.estimator_rows`` defines each number). The timings are ``None`` where the document has none (a
    baseline saved without timings); ``exact_over_estimate`` is ``None`` too when the estimate took no time."""

    method: str
    exact_method: str
    n_tasks: int
    pooled_auroc: float | None
    pooled_auroc_ci95: tuple[float, float] | None
    exact_pooled_auroc: float | None
    exact_metric_pooled_auroc: float | None
    mean_spearman: float | None
    on_line_share: float | None
    false_negatives: int
    n_in: int
    estimate_seconds: float | None = None
    exact_seconds: float | None = None
    exact_over_estimate: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "pooled_auroc_ci95", _pair(self.pooled_auroc_ci95))

    @property
    def timed(self) -> bool:
        return self.estimate_seconds is not None or self.exact_seconds is not None

    def to_json(self) -> dict:
        out = {f: _plain(getattr(self, f)) for f in self.__dataclass_fields__ if f not in _ATTRIBUTION_TIMINGS}
        if self.timed:
            out.update({f: getattr(self, f) for f in _ATTRIBUTION_TIMINGS})
        return out

    @classmethod
    def from_json(cls, d: Any, where: str = "attribution summary") -> "AttributionSummary":
        if not isinstance(d, Mapping) or not isinstance(d.get("method"), str) or not isinstance(d.get("exact_method"), str):
            raise DocumentError(f"{where}: every entry needs string 'method' and 'exact_method', got {str(d)[:80]}")
        name = f"{where} method {d['method']}"
        known = set(cls.__dataclass_fields__)
        missing = [k for k in cls.__dataclass_fields__ if k not in d and k not in _ATTRIBUTION_TIMINGS]
        unknown = [k for k in d if k not in known]
        if missing or unknown:
            wrong = (("missing", missing), ("unknown", unknown))
            raise DocumentError(f"{name}: " + "; ".join(f"{what} fields {keys}" for what, keys in wrong if keys))
        for k, v in d.items():
            if k in ("n_tasks", "false_negatives", "n_in"):
                ok = _count(v)
            elif k == "pooled_auroc_ci95":
                ok = _interval(v)
            else:
                ok = k in ("method", "exact_method") or _number(v)
            if not ok:
                raise DocumentError(f"{name}: {k} has the wrong type, got {v!r}")
        return cls(**dict(d))


_ATTRIBUTION_TIMINGS = ("estimate_seconds", "exact_seconds", "exact_over_estimate")


def _plain(x):
    """JSON-able copies of the read-only views the records hold."""
    if isinstance(x, Mapping):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


@dataclass(frozen=True)
class Leaderboard:
    """The document written to ``leaderboard.json`` (``abench.leaderboard.build`` makes it).

    ``summary_by_family``: per family, one ``MethodSummary`` per method (``abench.leaderboard.summarize``),
    best first; ``summary`` is the headline family's (its JSON key is written from it, never read).
    ``ground_truth_checks``: per task, its check; ``excluded_tasks``: the tasks whose check failed, with
    the reasons (their rows stay, unpooled).
    ``attribution``: per family, its ``AttributionSummary`` per estimator (empty without one).
    ``transfer``: per realism family, its ranking against ``siit`` (``abench.transfer``; empty without one).
    ``extra``: what the run adds (``selection``, ``failed_tasks``, ``speed``, ``partial``...).
    """

    environment: Mapping[str, Any]
    effect_convention: str
    ground_truth: Mapping[str, Mapping[str, str]]
    headline_family: str | None
    pooled_tasks: tuple[str, ...]
    summary_by_family: Mapping[str, tuple[MethodSummary, ...]]
    ground_truth_checks: Mapping[str, GroundTruthCheck]
    excluded_tasks: Mapping[str, list]
    rows: tuple[Row, ...]
    recommendation: Mapping[str, Any] = field(default_factory=dict)
    attribution: Mapping[str, tuple[AttributionSummary, ...]] = field(default_factory=dict)
    transfer: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", tuple(self.rows))
        object.__setattr__(self, "ground_truth_checks", _frozen({
            t: c if isinstance(c, GroundTruthCheck) else GroundTruthCheck.from_json(c, f"ground_truth_checks[{t!r}]")
            for t, c in self.ground_truth_checks.items()}))
        object.__setattr__(self, "pooled_tasks", tuple(self.pooled_tasks))
        object.__setattr__(self, "summary_by_family", _frozen({
            fam: tuple(s if isinstance(s, MethodSummary) else MethodSummary.from_json(s, f"summary_by_family[{fam!r}]") for s in summ)
            for fam, summ in self.summary_by_family.items()}))
        object.__setattr__(self, "attribution", _frozen({
            fam: tuple(s if isinstance(s, AttributionSummary) else AttributionSummary.from_json(s, f"attribution[{fam!r}]") for s in summ)
            for fam, summ in self.attribution.items()}))

    @property
    def summary(self) -> list[MethodSummary]:
        """The headline family's method summaries, best first (empty without a headline family)."""
        return list(self.summary_by_family.get(self.headline_family, [])) if self.headline_family else []

    def with_extra(self, **extra) -> "Leaderboard":
        return replace(self, extra={**self.extra, **extra})

    def to_json(self) -> dict:
        out = {"environment": _plain(self.environment), "effect_convention": self.effect_convention,
               "ground_truth": _plain(self.ground_truth), "headline_family": self.headline_family,
               "pooled_tasks": list(self.pooled_tasks), "summary": [s.to_json() for s in self.summary],
               "summary_by_family": {fam: [s.to_json() for s in summ] for fam, summ in self.summary_by_family.items()},
               "ground_truth_checks": {t: c.to_json() for t, c in self.ground_truth_checks.items()},
               "excluded_tasks": _plain(self.excluded_tasks), "rows": [r.to_json() for r in self.rows]}
        if self.attribution:
            out["attribution"] = {fam: [s.to_json() for s in summ] for fam, summ in self.attribution.items()}
        out["recommendation"] = _plain(self.recommendation)
        if self.transfer:
            out["transfer"] = _plain(self.transfer)
        out.update(_plain(self.extra))
        return out

    @classmethod
    def from_json(cls, doc: Any, where: str = "leaderboard") -> "Leaderboard":
        """The document of a JSON object, checked for the shape the suite reads (rows, summaries by
        family, their numbers); ``DocumentError`` naming ``where`` and what is wrong."""
        if not isinstance(doc, Mapping) or not isinstance(doc.get("rows"), list) or not isinstance(doc.get("summary_by_family"), Mapping):
            got = type(doc).__name__ if not isinstance(doc, Mapping) else f"keys {sorted(doc)[:8]}"
            raise DocumentError(f"{where}: not a leaderboard (an object with 'rows': list and 'summary_by_family': object), got {got}")
        rows = [Row.from_json(r, f"{where}: row {i}") for i, r in enumerate(doc["rows"])]
        for key in ("excluded_tasks", "ground_truth_checks", "ground_truth", "environment", "attribution", "recommendation", "transfer"):
            if doc.get(key) is not None and not isinstance(doc[key], Mapping):
                raise DocumentError(f"{where}: {key} must be an object")
        summaries = {}
        for key, kind in (("summary_by_family", MethodSummary), ("attribution", AttributionSummary)):
            summaries[key] = {}
            for fam, summ in (doc.get(key) or {}).items():
                if not isinstance(summ, list):
                    raise DocumentError(f"{where}: {key}[{fam!r}] must be a list, got {type(summ).__name__}")
                summaries[key][fam] = [kind.from_json(s, f"{where}: {key}[{fam!r}]") for s in summ]
        known = {"environment", "effect_convention", "ground_truth", "headline_family", "pooled_tasks", "summary",
                 "summary_by_family", "ground_truth_checks", "excluded_tasks", "rows", "attribution", "recommendation", "transfer"}
        return cls(environment=doc.get("environment") or {}, effect_convention=doc.get("effect_convention", ""),
                   ground_truth=doc.get("ground_truth") or {}, headline_family=doc.get("headline_family"),
                   pooled_tasks=doc.get("pooled_tasks") or [], summary_by_family=summaries["summary_by_family"],
                   ground_truth_checks=doc.get("ground_truth_checks") or {}, excluded_tasks=doc.get("excluded_tasks") or {},
                   rows=rows, recommendation=doc.get("recommendation") or {}, attribution=summaries["attribution"],
                   transfer=doc.get("transfer") or {},
                   extra={k: v for k, v in doc.items() if k not in known})
