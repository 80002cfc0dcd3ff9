"""Print the markdown table of SIIT models in the README from their cards (nothing typed by hand).

``python scripts/siit_models_table.py [weights dir]``: one row per card: program, LL size
(layers x heads, nodes), circuit nodes, longest input, steps and wall time of the run that
produced the weights (its device as recorded), the bar's numbers, and whether it ships. "circuit
weights": "trained" from a random init, "tracr init, trained" (every weight trained, the in-circuit
nodes starting as tracr's compiled ones: ``--init-tracr``), or "tracr, frozen" (the ``*_compiled``
variants, family ``siit_compiled``: only their bystanders are trained).
The last line sums the wall times: what ``python -m tasks.siit --task all`` took, model by model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def circuit_weights(card: dict) -> str:
    """tracr's compiled weights kept frozen, tracr's weights as the start of training, or a random init."""
    if (card.get("hyperparameters") or {}).get("frozen"):
        return "tracr, frozen"
    return "tracr init, trained" if (card.get("config") or {}).get("init_tracr") else "trained"


def rows(weights: Path) -> list[dict]:
    out = []
    for path in sorted(weights.glob("*.json")):
        c = json.loads(path.read_text())
        cfg = c["ll_config"]
        out.append({
            "model": f"siit_{path.stem}", "ships": bool(c.get("passed")) and c.get("protocol") == 2,
            "LL": f"{cfg['n_layers']} x {cfg['n_heads']}, d {cfg['d_model']}", "nodes": c.get("n_ll_nodes"),
            "circuit": len(c["correspondence"]),
            "circuit weights": circuit_weights(c), "max len": cfg["n_ctx"] - 1, "steps": c.get("steps"),
            "wall s": c.get("wall_time_s"), "continued": c.get("continued_from") is not None,
            "acc": c.get("accuracy"), "IIA min": c.get("iia_min_node"), "SIIA min": c.get("siia_min_node"),
            "live min": c.get("liveness_min_out_of_circuit"),
        })
    return out


def main(argv: list[str]) -> None:
    from tasks.siit.model import WEIGHTS_DIR

    table = rows(Path(argv[0]) if argv else WEIGHTS_DIR)
    cols = list(table[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in table:
        print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) and k != "wall s" else str(v) for k, v in r.items()) + " |")
    total = sum(r["wall s"] or 0 for r in table)
    print(f"\n{len(table)} cards, {sum(r['ships'] for r in table)} ship; wall time of the runs behind them: {total:.0f} s "
          f"({total / 3600:.2f} h; continued runs count only their last stage)")


if __name__ == "__main__":
    main(sys.argv[1:])
