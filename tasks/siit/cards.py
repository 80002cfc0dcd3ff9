"""SIIT weights and cards on disk: save, validate, load, the shipped set, and the task a card makes."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from tasks.base import Task, redundant_sets
from tasks.siit.architecture import LL_ACT_FNS, LL_ATTENTION, LL_NORMS, build_ll, correspondence, ll_circuit, ll_nodes
from tasks.siit.protocol import CARD_PROTOCOL
from tasks.siit.variants import family_of, is_compiled, layers_of, program_of, redundant_of
from tasks.tracr.compiled import tracr_task

# $ABENCH_SIIT_WEIGHTS points the registry (and the trainer) at another folder, e.g. in tests
WEIGHTS_DIR = Path(os.environ.get("ABENCH_SIIT_WEIGHTS") or Path(__file__).resolve().parent.parent / "weights" / "siit")
# Cards of models that missed the bar (weights only where a test loads them): kept for the models
# table and the tests, never package data (pyproject), never listed by ``shipped``
FAILED_DIR = Path(__file__).resolve().parent.parent / "weights" / "siit_failed"
CARD_VERSION = 1


class SiitLoadError(ValueError):
    """A shipped SIIT weight file or card is missing, corrupt or does not match."""


def is_weight(key: str) -> bool:
    """A state-dict key that holds a trained tensor (not a HookedTransformer buffer: attention masks, IGNORE)."""
    return not key.endswith(("IGNORE", ".mask"))


def paths(name: str, weights_dir: Path | None = None) -> tuple[Path, Path]:
    d = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    return d / f"{name}.safetensors", d / f"{name}.json"


def save(name: str, ll: HookedTransformer, aux: dict[str, torch.Tensor], card: dict, weights_dir: Path | None = None) -> None:
    from safetensors.torch import save_file

    wpath, cpath = paths(name, weights_dir)
    wpath.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().contiguous() for k, v in ll.state_dict().items() if is_weight(k)}
    sd.update({k: v.detach().cpu().contiguous() for k, v in aux.items()})
    card = dict(card)
    card["shapes"] = {k: list(v.shape) for k, v in sd.items()}
    save_file(sd, str(wpath), metadata={"task": name, "card_version": str(CARD_VERSION)})
    cpath.write_text(json.dumps(card, indent=1) + "\n")


# The card fields ``load`` reads, checked before any model is built: {field: (check, what it must be)}.
_POSITIVE_INT = (lambda v: type(v) is int and v >= 1, "a positive integer")
LL_CONFIG_SCHEMA = {k: _POSITIVE_INT for k in ("n_layers", "n_heads", "d_model", "d_head", "d_mlp", "d_vocab", "d_vocab_out", "n_ctx")}
# set by build_ll itself, so a card may not carry them
_BUILD_LL_FIXED = {"default_prepend_bos", "device", "seed"}
CARD_SCHEMA = {
    "card_version": (lambda v: type(v) is int, "an integer"),
    "ll_config": (lambda v: isinstance(v, dict), "an object"),
    "correspondence": (lambda v: isinstance(v, dict) and bool(v) and all(
        isinstance(k, str) and (isinstance(x, str) or (isinstance(x, list) and len(x) >= 2 and all(isinstance(m, str) for m in x)
                                                       and len(set(x)) == len(x))) for k, x in v.items()),
                       "a non-empty object of HL node name -> LL node name string (or a list of >= 2 distinct LL node "
                       "name strings for a redundant node)"),
    "shapes": (lambda v: isinstance(v, dict) and all(isinstance(s, list) and all(type(x) is int and x >= 0 for x in s) for s in v.values()),
               "an object of tensor name -> list of non-negative integers"),
}
OPTIONAL_CARD_SCHEMA = {"passed": (lambda v: type(v) is bool, "true or false"), "protocol": (lambda v: type(v) is int, "an integer")}


def validate_card(card, where: str) -> None:
    """Raise ``SiitLoadError`` naming the first card field of a wrong type or out of range."""
    if not isinstance(card, dict):
        raise SiitLoadError(f"{where} must be a JSON object, got {type(card).__name__}")
    for key, (ok, what) in CARD_SCHEMA.items():
        if key not in card:
            raise SiitLoadError(f"{where} lacks {key!r}")
        if not ok(card[key]):
            raise SiitLoadError(f"{where}: field {key} must be {what}, got {card[key]!r:.80}")
    for key, (ok, what) in OPTIONAL_CARD_SCHEMA.items():
        if key in card and not ok(card[key]):
            raise SiitLoadError(f"{where}: field {key} must be {what}, got {card[key]!r:.80}")
    cfg = card["ll_config"]
    allowed = {f.name for f in dataclasses.fields(HookedTransformerConfig)} - _BUILD_LL_FIXED
    for key, (ok, what) in LL_CONFIG_SCHEMA.items():
        if key not in cfg:
            raise SiitLoadError(f"{where}: ll_config lacks {key!r}")
        if not ok(cfg[key]):
            raise SiitLoadError(f"{where}: field ll_config.{key} must be {what}, got {cfg[key]!r:.80} ({type(cfg[key]).__name__})")
    for key, allowed_values in (("act_fn", LL_ACT_FNS), ("normalization_type", LL_NORMS), ("attention_dir", LL_ATTENTION)):
        if key in cfg and cfg[key] not in allowed_values:
            raise SiitLoadError(f"{where}: field ll_config.{key} must be one of {allowed_values}, got {cfg[key]!r:.80}")
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise SiitLoadError(f"{where}: ll_config has fields a HookedTransformerConfig cannot take (or that build_ll sets): {unknown}")


def load(name: str, device: str = "cpu", weights_dir: Path | None = None) -> tuple[HookedTransformer, dict[str, torch.Tensor], dict]:
    """(LL model, aux readout tensors, card). Raises ``SiitLoadError`` on any mismatch."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    wpath, cpath = paths(name, weights_dir)
    if not wpath.exists() or not cpath.exists():
        raise SiitLoadError(f"SIIT task {name!r}: missing {wpath if not wpath.exists() else cpath}; retrain with `python -m siit_training --task {name}`")
    try:
        card = json.loads(cpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SiitLoadError(f"SIIT task {name!r}: card {cpath} is not valid JSON ({err})") from None
    validate_card(card, f"SIIT task {name!r}: card {cpath}")
    if card["card_version"] != CARD_VERSION:
        raise SiitLoadError(f"SIIT task {name!r}: card version {card['card_version']} != {CARD_VERSION}")
    try:
        sd = load_file(str(wpath), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise SiitLoadError(f"SIIT task {name!r}: {wpath} is not a readable safetensors file ({err})") from None
    expected = card["shapes"]
    missing = sorted(set(expected) - set(sd))
    extra = sorted(set(sd) - set(expected))
    if missing or extra:
        raise SiitLoadError(f"SIIT task {name!r}: {wpath} keys differ from its card: missing {missing}, unexpected {extra}")
    bad = [f"{k}: file {list(sd[k].shape)} vs card {expected[k]}" for k in expected if list(sd[k].shape) != expected[k]]
    if bad:
        raise SiitLoadError(f"SIIT task {name!r}: tensor shapes differ from the card: {'; '.join(bad)}")
    try:
        ll = build_ll(card["ll_config"], device="cpu", seed=0)
    except (AssertionError, ValueError, TypeError) as err:
        raise SiitLoadError(f"SIIT task {name!r}: card {cpath}: ll_config builds no model ({type(err).__name__}: {err})") from None
    aux = {k: sd.pop(k) for k in [k for k in sd if k.startswith("aux.")]}
    want = {k for k in ll.state_dict() if is_weight(k)}
    if want != set(sd):
        raise SiitLoadError(
            f"SIIT task {name!r}: weights do not fit the LL config: missing {sorted(want - set(sd))}, unexpected {sorted(set(sd) - want)}"
        )
    try:
        ll.load_state_dict(sd, strict=False)
    except RuntimeError as err:
        raise SiitLoadError(f"SIIT task {name!r}: weights do not fit the LL config ({err})") from None
    for k, v in sd.items():
        if not torch.isfinite(v).all():
            raise SiitLoadError(f"SIIT task {name!r}: tensor {k} has non-finite values")
    ll.to(device, print_details=False)
    ll.eval()
    aux = {k: v.to(device) for k, v in aux.items()}
    return ll, aux, card


def shipped(weights_dir: Path | None = None) -> list[str]:
    """Tasks with a card in the weights folder that passed the bar with cross-length sources.

    A card that cannot be read (not JSON, not an object) is listed too: the task then fails to
    load with the reason, in the leaderboard, instead of silently leaving the suite."""
    d = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    out = []
    for c in sorted(d.glob("*.json")):
        try:
            card = json.loads(c.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            out.append(c.stem)
            continue
        if not isinstance(card, dict):
            out.append(c.stem)
            continue
        # earlier protocols read IIA on same-length sources and the bar on node means
        if card.get("passed") and card.get("protocol") == CARD_PROTOCOL:
            out.append(c.stem)
    return out


def siit_task(name: str, device: str = "cpu", weights_dir: Path | None = None) -> Task:
    """The SIIT task ``siit_<name>`` for tracr program ``program_of(name)``: trained LL model +
    resample ground truth. A variant with redundant nodes (``SIIT_VARIANTS``) is in family
    ``siit_backup`` and declares each redundant set in ``joint_sets``."""
    name = name.removeprefix("siit_")
    ll, aux, card = load(name, device, weights_dir)
    program = program_of(name)
    if card.get("program", program) != program:
        raise SiitLoadError(f"SIIT task {name!r}: card program {card.get('program')!r} is not {program!r}")
    hl = tracr_task(program, device)
    frozen = bool((card.get("hyperparameters") or {}).get("frozen"))
    if frozen != is_compiled(name):  # a compiled circuit never joins the siit family, nor a trained one siit_compiled
        raise SiitLoadError(f"SIIT task {name!r}: card says the circuit was {'frozen at tracr' if frozen else 'trained'}, "
                            f"but {name!r} is {'a compiled-circuit variant' if is_compiled(name) else 'a trained-circuit model'}")
    if card["correspondence"] != correspondence(hl, ll, redundant_of(name), layers_of(name)):
        raise SiitLoadError(f"SIIT task {name!r}: card correspondence does not match the tracr program's circuit"
                            + (f" with redundant nodes {redundant_of(name)}" if redundant_of(name) else ""))
    nodes = ll_nodes(ll, ll_circuit(card["correspondence"]))
    return Task(
        name=f"siit_{name}",
        family=family_of(name),
        model=ll,
        output=hl.output,
        nodes=nodes,
        inputs=hl.inputs,
        encoding=hl.encoding,
        ground_truth="resample",
        info={"label": hl.info.get("label"), "output_values": hl.info.get("output_values"), "aux": aux, "card": card},
        high_level=hl,
        correspondence=card["correspondence"],
        joint_sets=redundant_sets(card["correspondence"]),
    )
