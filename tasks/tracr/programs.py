"""The tracr programs the suite compiles, each with the input distribution it needs.

Most programs come from ``tracr.compiler.lib``; ``first_count``, ``first_runs``, ``first_frac``,
``prev_token``, ``after_a``, ``same_as_prev``, ``prev_prev``, ``back2``, ``back3``, ``first_token``,
``same_as_first``, ``prev_is_first``, ``sum_prev`` and ``mix3`` are written here (``make_*`` below; ``mix3`` is built with
the library's ``make_nary_sequencemap``). Samplers respect each program's precondition
(``sort_unique``: distinct tokens; ``shuffle_dyck``: half of the inputs balanced, or labels
would barely vary) and lengths vary, so length-dependent components are visible.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from tasks.base import InputSpec, Output, InputSeq


@dataclass(frozen=True)
class ProgramSpec:
    name: str
    build: Callable[[], object]  # () -> rasp.SOp; imported lazily (tracr/jax are slow to import)
    inputs: InputSpec
    output: Output


def distinct_sampler(vocab):
    def sample(rng: random.Random, length: int) -> InputSeq:
        return rng.sample(list(vocab), length)

    def edit(rng: random.Random, seq: InputSeq) -> InputSeq:
        out = list(seq)
        unused = [v for v in vocab if v not in out]
        i = rng.randrange(len(out))
        if unused:
            out[i] = rng.choice(unused)
        else:  # every value used: swap two positions, the minimal edit that keeps them distinct
            j = rng.choice([k for k in range(len(out)) if k != i])
            out[i], out[j] = out[j], out[i]
        return out

    return sample, edit


def dyck_sampler(pairs: list[str]):
    """Half balanced shuffle-Dyck words (each bracket type balanced on its own), half uniform."""
    vocab = [c for p in pairs for c in p]

    def balanced(rng: random.Random, length: int) -> InputSeq | None:
        if length % 2:
            return None
        # random interleaving of per-type balanced words
        out: InputSeq = []
        opens = {p[0]: 0 for p in pairs}
        remaining = length
        while remaining:
            can_close = [p for p in pairs if opens[p[0]] > 0]
            open_left = remaining - sum(opens.values())
            choices = ([p[0] for p in pairs] if open_left > 0 and open_left >= 2 else []) + [p[1] for p in can_close]
            if open_left <= 0:
                choices = [p[1] for p in can_close]
            c = rng.choice(choices)
            for p in pairs:
                if c == p[0]:
                    opens[c] += 1
                elif c == p[1]:
                    opens[p[0]] -= 1
            out.append(c)
            remaining -= 1
        return out

    def sample(rng: random.Random, length: int) -> InputSeq:
        if rng.random() < 0.5:
            word = balanced(rng, length)
            if word is not None:
                return word
        return [rng.choice(vocab) for _ in range(length)]

    return vocab, sample


def _first_token(rasp):
    """The first input token, at every position: one head attending to position 0."""
    return rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == 0), rasp.tokens).named("first")


def _shift_clamped(rasp, sop, name: str):
    """``sop`` one position back (position 0 keeps its own value, so no position is None)."""
    return rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == max(q - 1, 0)), sop).named(name)


def make_first_count():
    """Written here (categorical, 5 nodes over 3 layers): at every position, how many other tokens
    equal the first token. L0: head reads the first token, MLP compares; L1: SelectorWidth (head +
    MLP) counts; L2: MLP subtracts the first token itself."""
    from tracr.rasp import rasp

    same = rasp.SequenceMap(lambda t, f: 1 if t == f else 0, rasp.tokens, _first_token(rasp)).named("same_as_first")
    count = rasp.SelectorWidth(rasp.Select(same, same, lambda k, q: k == 1)).named("n_same")
    return rasp.Map(lambda c: c - 1, count).named("others_like_first")


def make_first_runs():
    """Written here (categorical, 6 nodes over 3 layers, no counting): at every position, how many of
    (this token, the one before) and (the one before, the one before that) are both equal to the
    first token. L0: head reads the first token, MLP compares; L1: head shifts, MLP ANDs; L2: head
    shifts, MLP adds. Position 0 reads itself where a shift would fall off the start."""
    from tracr.rasp import rasp

    same = rasp.SequenceMap(lambda t, f: 1 if t == f else 0, rasp.tokens, _first_token(rasp)).named("same_as_first")
    pair = rasp.SequenceMap(lambda a, b: a * b, same, _shift_clamped(rasp, same, "prev_same")).named("pair_same")
    return rasp.SequenceMap(lambda a, b: a + b, pair, _shift_clamped(rasp, pair, "prev_pair")).named("runs_of_first")


def make_first_frac():
    """Written here (numerical output, 4 nodes over 3 layers): the fraction of tokens equal to the
    first token. L0: head reads the first token, MLP compares; L1: MLP maps to a number; L2: head
    averages it over every position."""
    from tracr.rasp import rasp

    same = rasp.SequenceMap(lambda t, f: 1 if t == f else 0, rasp.tokens, _first_token(rasp)).named("same_as_first")
    same_num = rasp.numerical(rasp.Map(lambda s: s, same)).named("same_num")
    select_all = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.TRUE)
    return rasp.numerical(rasp.Aggregate(select_all, same_num, default=0)).named("frac_same_as_first")


def make_prev_token():
    """Written here (categorical, one head): the previous token (position 0: its own)."""
    from tracr.rasp import rasp

    return _shift_clamped(rasp, rasp.tokens, "prev_token")


def make_after_a():
    """Written here (categorical, 3 nodes over 2 layers): is this token a "b" right after an "a"?
    L0: MLP flags "a"; L1: head shifts the flag, MLP combines it with the token."""
    from tracr.rasp import rasp

    is_a = rasp.Map(lambda t: 1 if t == "a" else 0, rasp.tokens).named("is_a")
    prev_a = _shift_clamped(rasp, is_a, "prev_is_a")
    return rasp.SequenceMap(lambda p, t: 1 if p == 1 and t == "b" else 0, prev_a, rasp.tokens).named("b_after_a")


def make_same_as_prev():
    """Written here (categorical, 2 nodes in layer 0): does this token repeat the previous one?
    L0: head reads the previous token, MLP compares (position 0 compares with itself)."""
    from tracr.rasp import rasp

    prev = _shift_clamped(rasp, rasp.tokens, "prev_token")
    return rasp.SequenceMap(lambda t, p: 1 if t == p else 0, rasp.tokens, prev).named("same_as_prev")


def make_prev_prev():
    """Written here (categorical, 2 heads over 2 layers, composed): the token two positions back,
    by shifting twice (clamped at position 0), as a previous-token head feeds a later head."""
    from tracr.rasp import rasp

    return _shift_clamped(rasp, _shift_clamped(rasp, rasp.tokens, "prev_token"), "prev_prev_token")


def make_first_token():
    """Written here (categorical, one head): the first token, at every position."""
    from tracr.rasp import rasp

    return _first_token(rasp)


def make_back2():
    """Written here (categorical, one head): the token two positions back (clamped at position 0) in
    a single head; ``prev_prev`` computes the same function with two composed heads."""
    from tracr.rasp import rasp

    return rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == max(q - 2, 0)), rasp.tokens).named("back2")


def make_sum_prev():
    """Written here (categorical, 2 nodes in layer 0): (token + previous token) mod 3 on tokens 0..2."""
    from tracr.rasp import rasp

    prev = _shift_clamped(rasp, rasp.tokens, "prev_token")
    return rasp.SequenceMap(lambda t, p: (t + p) % 3, rasp.tokens, prev).named("sum_prev")


def make_same_as_first():
    """Written here (categorical, 2 nodes in layer 0): does this token equal the first token?"""
    from tracr.rasp import rasp

    return rasp.SequenceMap(lambda t, f: 1 if t == f else 0, rasp.tokens, _first_token(rasp)).named("same_as_first")


def make_back3():
    """Written here (categorical, one head): the token three positions back (clamped at position 0)."""
    from tracr.rasp import rasp

    return rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == max(q - 3, 0)), rasp.tokens).named("back3")


def make_prev_is_first():
    """Written here (categorical, 3 nodes in layer 0: two heads and an MLP): does the previous
    token equal the first token?"""
    from tracr.rasp import rasp

    prev = _shift_clamped(rasp, rasp.tokens, "prev_token")
    return rasp.SequenceMap(lambda p, f: 1 if p == f else 0, prev, _first_token(rasp)).named("prev_is_first")


def make_mix3():
    """``tracr.compiler.lib.make_nary_sequencemap`` over (token, previous token, first token):
    (t + prev + first) mod 3 on tokens 0..2. Two heads read, three MLPs combine."""
    from tracr.compiler import lib
    from tracr.rasp import rasp

    prev = _shift_clamped(rasp, rasp.tokens, "prev_token")
    return lib.make_nary_sequencemap(lambda t, p, f: (t + p + f) % 3, rasp.tokens, prev, _first_token(rasp)).named("mix3")


def _specs() -> dict[str, ProgramSpec]:
    def lib():
        from tracr.compiler import lib as _lib
        from tracr.rasp import rasp as _rasp

        return _lib, _rasp

    max_len = 5
    dyck_pairs = ["()", "{}"]
    dyck_vocab, dyck_sample = dyck_sampler(dyck_pairs)
    uniq_sample, uniq_edit = distinct_sampler([1, 2, 3, 4, 5])
    specs = [
        ProgramSpec("reverse", lambda: lib()[0].make_reverse(lib()[1].tokens), InputSpec([1, 2, 3], max_len), "categorical"),
        ProgramSpec(
            "sort",
            lambda: lib()[0].make_sort(lib()[1].tokens, lib()[1].tokens, max_seq_len=max_len, min_key=1),
            InputSpec([1, 2, 3, 4], max_len),
            "categorical",
        ),
        ProgramSpec(
            "sort_unique",
            lambda: lib()[0].make_sort_unique(lib()[1].tokens, lib()[1].tokens),
            InputSpec([1, 2, 3, 4, 5], max_len, sample=uniq_sample, edit=uniq_edit),
            "categorical",
        ),
        ProgramSpec("sort_freq", lambda: lib()[0].make_sort_freq(max_len), InputSpec([1, 2, 3], max_len), "categorical"),
        ProgramSpec("hist", lambda: lib()[0].make_hist(), InputSpec(["a", "b", "c"], max_len), "categorical"),
        ProgramSpec("length", lambda: lib()[0].make_length(), InputSpec(["a", "b", "c"], max_len), "categorical"),
        ProgramSpec(
            "frac_prevs",
            lambda: lib()[0].make_frac_prevs(lib()[1].tokens == "x"),
            InputSpec(["a", "b", "x"], max_len),
            "numerical",
        ),
        ProgramSpec(
            "pair_balance",
            lambda: lib()[0].make_pair_balance(lib()[1].tokens, "(", ")"),
            InputSpec(["(", ")", "a"], max_len),
            "numerical",
        ),
        ProgramSpec(
            "count_less_freq",
            lambda: lib()[0].make_count_less_freq(2),
            InputSpec(["a", "b", "c", "d"], max_len),
            "categorical",
        ),
        ProgramSpec(
            "shuffle_dyck",
            lambda: lib()[0].make_shuffle_dyck(dyck_pairs),
            InputSpec(dyck_vocab, 6, sample=dyck_sample),
            "categorical",
        ),
        # inputs up to length 8
        ProgramSpec("count_a", lambda: lib()[0].make_count(lib()[1].tokens, "a"), InputSpec(["a", "b", "c"], 8), "categorical"),
        # written in this project
        ProgramSpec("first_count", make_first_count, InputSpec(["a", "b", "c"], 8), "categorical"),
        ProgramSpec("first_runs", make_first_runs, InputSpec(["a", "b"], 6), "categorical"),
        ProgramSpec("first_frac", make_first_frac, InputSpec(["a", "b", "c"], 6), "numerical"),
        ProgramSpec("prev_token", make_prev_token, InputSpec(["a", "b", "c", "d"], 8), "categorical"),
        ProgramSpec("after_a", make_after_a, InputSpec(["a", "b", "c"], 6), "categorical"),
        ProgramSpec("mix3", make_mix3, InputSpec([0, 1, 2], 6), "categorical"),
        ProgramSpec("same_as_prev", make_same_as_prev, InputSpec(["a", "b", "c"], 6), "categorical"),
        ProgramSpec("prev_prev", make_prev_prev, InputSpec(["a", "b", "c", "d"], 6), "categorical"),
        ProgramSpec("back2", make_back2, InputSpec(["a", "b", "c", "d"], 6), "categorical"),
        ProgramSpec("first_token", make_first_token, InputSpec(["a", "b", "c", "d"], 6), "categorical"),
        ProgramSpec("sum_prev", make_sum_prev, InputSpec([0, 1, 2], 6), "categorical"),
        ProgramSpec("same_as_first", make_same_as_first, InputSpec(["a", "b", "c"], 6), "categorical"),
        ProgramSpec("back3", make_back3, InputSpec(["a", "b", "c", "d"], 7), "categorical"),
        ProgramSpec("prev_is_first", make_prev_is_first, InputSpec(["a", "b", "c"], 6), "categorical"),
    ]
    return {s.name: s for s in specs}


PROGRAMS: dict[str, ProgramSpec] = _specs()
