"""Method specs: ``name[param=value,...]`` -> the method's registry name and its parameters.

``scaled_resample[s=0.5]`` -> ``MethodSpec("scaled_resample", {"s": 0.5})``;
``pca_resample[k=2,complement]`` -> ``MethodSpec("pca_resample", {"k": 2}, ("complement",))``: a
bare word is a flag, which the method's ``flag_param`` names (``ablations/pca.py``). Used by
``ablations.make_method``, the ``--methods`` option, the leaderboard rows (``method_base`` and
``params``) and the report (the scaled-resample sweep).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

_SPEC = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[(.*)\])?$")


@dataclass(frozen=True)
class MethodSpec:
    name: str
    params: dict = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    bracketed: bool = False  # written with brackets (``name[]`` too)

    def kwargs(self, flag_param: str | None) -> dict:
        """The keyword arguments of the method's constructor: ``params`` plus the one flag under
        ``flag_param``. ValueError when there are flags the method does not take."""
        out = dict(self.params)
        if self.flags:
            if flag_param is None or len(self.flags) > 1:
                raise ValueError(f"{self.name!r} takes no bare parameter {list(self.flags)}")
            out[flag_param] = self.flags[0]
        return out


def parse_params(text: str) -> tuple[dict, list[str]]:
    """``"k=2,complement"`` -> ``({"k": 2}, ["complement"])`` (values read as Python literals, else strings)."""
    kwargs, flags = {}, []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" in part:
            key, val = (s.strip() for s in part.split("=", 1))
            try:
                kwargs[key] = ast.literal_eval(val)
            except (ValueError, SyntaxError):
                kwargs[key] = val
        else:
            flags.append(part)
    return kwargs, flags


def parse_spec(text: str) -> MethodSpec | None:
    """The spec of ``text``, or None when it is not of the form ``name`` / ``name[...]``."""
    m = _SPEC.match(text.strip())
    if not m:
        return None
    if m.group(2) is None:
        return MethodSpec(m.group(1))
    params, flags = parse_params(m.group(2))
    return MethodSpec(m.group(1), params, tuple(flags), bracketed=True)


def split_specs(text: str) -> list[str]:
    """Split on commas outside brackets: ``a,pca_self[k=1,high]`` -> two specs."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]
