"""The ablation-method interface (``AblationMethod``: ``fit`` on a ``TaskData``, ``ablate`` a ``NodeBatch``) and the registry of methods by name.

A method follows scikit-learn's estimator shape: configured in ``__init__`` (no work), learns
in ``fit(data)`` (state in attributes ending in ``_``), and acts in ``ablate(batch)``, which
returns the value written in place of one node's activation. ``zero`` and ``resample`` learn
nothing; ``mean``, ``pca_*``, ``noise`` and ``optimal`` learn from the task's fit data.
"""

from __future__ import annotations

import inspect
import re
import warnings
from typing import Any, Callable

import torch

from interventions.methodspec import parse_spec

from ablations.task_data import NodeBatch, TaskData  # noqa: F401 (NodeBatch: the interface's argument, imported from here too)


class AblationMethod:
    """Base class of every method. Subclasses override ``ablate`` and, if they learn, ``fit``.

    ``ablate`` must return a tensor of the shape of ``batch.clean`` and must not modify its
    inputs. The suite checks both and the finiteness of the result.
    """

    #: registry name; parametrised methods add their parameters (``scaled_resample[s=0.5]``).
    base_name: str = "unnamed"
    #: where the replacement comes from, for iit's ``check_causal_effect`` (``abench.conventions``):
    #: ``"resample"``, ``"same_length"``, ``"counterfactual"``, or None (no source: zero, mean, ...).
    iit_source: str | None = None

    @property
    def name(self) -> str:
        return self.base_name

    def fit(self, data: TaskData) -> "AblationMethod":
        return self

    def ablate(self, batch: NodeBatch) -> torch.Tensor:  # [batch, pos, d]
        raise NotImplementedError

    def get_params(self) -> dict[str, Any]:
        """The constructor's keyword arguments as the method holds them (scikit-learn's ``get_params``):
        each parameter of ``__init__`` read from the attribute of its name. A row's ``params`` are
        these (``abench.bench.method_fields``). Raises ``AttributeError`` naming a parameter the
        method does not keep under its own name."""
        out = {}
        for p in list(inspect.signature(type(self).__init__).parameters.values())[1:]:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if not hasattr(self, p.name):
                raise AttributeError(f"{type(self).__name__}.get_params: parameter {p.name!r} of __init__ is not kept as "
                                     f"the attribute self.{p.name}")
            out[p.name] = getattr(self, p.name)
        return out

    def __repr__(self) -> str:
        return self.name


class FunctionMethod(AblationMethod):
    """Wraps a plain function ``f(batch) -> tensor`` (a method that learns nothing)."""

    def __init__(self, name: str, fn: Callable[[NodeBatch], torch.Tensor]):
        self.base_name = name
        self.fn = fn
        self.__doc__ = fn.__doc__

    def ablate(self, batch: NodeBatch) -> torch.Tensor:
        return self.fn(batch)

    def get_params(self) -> dict[str, Any]:
        return {}  # a plain function takes no parameters (its name and body are not ones)


REGISTRY: dict[str, Callable[..., AblationMethod]] = {}
REGISTRATIONS: list[str] = []  # every register() call in order, re-registrations included


def register(name: str, replace: bool = False):
    """Register a method class (or a plain ``f(batch) -> tensor`` function) under ``name``.

    A name already registered (a built-in, or another plugin's) is an error unless
    ``replace=True`` says the new definition is meant to shadow the old one.

    >>> @register("negate")
    ... def negate(batch): return -batch.clean
    """

    def deco(obj):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"method name {name!r} must be an identifier (parameters go in brackets at use)")
        if name in REGISTRY:
            if not replace:
                raise ValueError(f"ablation method {name!r} is already registered; choose another name, or "
                                 f"register({name!r}, replace=True) to replace it on purpose")
            warnings.warn(f"ablation method {name!r} is registered again (replace=True): the new definition replaces the old",
                          stacklevel=2)
        REGISTRATIONS.append(name)
        if isinstance(obj, type) and issubclass(obj, AblationMethod):
            obj.base_name = name
            REGISTRY[name] = obj
        elif callable(obj):
            REGISTRY[name] = lambda obj=obj: FunctionMethod(name, obj)
        else:
            raise TypeError(f"register({name!r}) needs an AblationMethod subclass or a function, got {obj!r}")
        return obj

    return deco


def param(value, name: str, kind: type = float, low: float | None = None, low_open: bool = False):
    """A method parameter checked at construction: a number of ``kind`` (int: no fraction), finite,
    ``>= low`` (``> low`` when ``low_open``). Raises ``ValueError`` naming it and its value."""
    what = "an integer" if kind is int else "a finite number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    if kind is int and int(value) != value:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {value!r}")
    return kind(value)


def make_method(full_name: str) -> AblationMethod:
    """A fresh method from a spec such as ``zero``, ``scaled_resample[s=0.5]``, ``pca_resample[k=2,complement]``
    (``interventions.methodspec.parse_spec``)."""
    spec = parse_spec(full_name)
    if spec is None or spec.name not in REGISTRY:
        raise KeyError(f"unknown ablation method {full_name!r}; valid names: {', '.join(sorted(REGISTRY))}")
    factory = REGISTRY[spec.name]
    if not spec.bracketed:
        return factory()
    try:
        kwargs = spec.kwargs(getattr(factory, "flag_param", None))
    except ValueError as err:
        raise ValueError(f"method {full_name!r}: {err}") from None
    try:
        return factory(**kwargs)
    except (TypeError, ValueError) as err:  # unknown keyword, wrong type or out of range, e.g. s=abc, k=0
        raise ValueError(f"bad parameters for method {full_name!r}: {err}") from None
