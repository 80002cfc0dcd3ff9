"""One benchmark run: the selection, the per-task data, the rows, and the leaderboard it ends with.

The pytest plugin (``abench.pytest_plugin``) reads the command line into ``SessionOptions`` and calls
this module; nothing here imports pytest, so a run can be driven, and tested, without it. A bad option
is an ``OptionError`` (the plugin reports it as a usage error), raised when the session is built,
before any task is loaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from abench import bench, leaderboard
from abench.baseline import read_baseline
from abench.compare import compare
from abench.conventions import CONVENTIONS, DEFAULT_CONVENTION
from abench.data_budget import check_data_budget
from abench.document import GroundTruthCheck, Leaderboard, Row
from abench.recommend import RANKING_RULE, ranking
from abench.ground_truth import check_task
from abench.report import tables
from abench.report_folder import JOURNAL, PARTIAL, append_entry, check_output_file, check_report_dir, read_journal
from ablations import DEFAULT_METHODS, SCALE_SWEEP_METHODS, make_method
from ablations.base import REGISTRATIONS
from interventions import memory
from interventions.methodspec import split_specs
from tasks.registry import LOADERS, load_entry_point_tasks, load_task, load_task_file, resolve_task_names
from tasks.user_tasks import TaskSpecError

DEFAULT_REPORT_DIR = "reports"
LOCAL_REPORT_DIR = "reports/local"
COMMITTED_LEADERBOARD = "reports/leaderboard.json"


class OptionError(ValueError):
    """An option value the session cannot use; the message names the option."""


class TaskSetupError(RuntimeError):
    """A task could not be loaded, given data or checked; the message is the one-line reason."""


@dataclass(frozen=True)
class SessionOptions:
    """The run's options as plain values, a preset's values already filled in. The defaults are the
    command line's (the plugin takes its option defaults from here)."""

    tasks: str | None = None  # comma-separated names or families; None: every task (or only --task-module's)
    methods: str | None = None  # comma-separated method specs; None: the default set
    n_fit: int = bench.DEFAULT_N_FIT
    n_eval: int = bench.DEFAULT_N_EVAL
    seed: int = bench.DEFAULT_SEED
    scale_sweep: bool = False
    ablation_modules: tuple[str, ...] = ()
    task_modules: tuple[str, ...] = ()
    effect_convention: str = DEFAULT_CONVENTION
    device: str | None = None  # None: cuda when available, else cpu
    threads: int = 1
    max_batch_mb: float | None = None
    report_dir: str | None = None  # None: reports for the default selection, reports/local otherwise
    resume: bool = False
    rank_against: str | None = None
    compare: str | None = None
    tolerance: float = 0.02
    save_baseline: str | None = None
    # the options given that make the selection not the default one (e.g. "--tasks"): they send the
    # reports to reports/local unless report_dir is given, so a partial run never overwrites the tracked ones
    explicit: tuple[str, ...] = ()


def load_ablation_module(path: str) -> list[str]:
    """Import a user's method file; return the names it registered."""
    p = Path(path)
    if not p.is_file():
        raise OptionError(f"--ablation-module: no such file {path!r}")
    before = len(REGISTRATIONS)
    spec = importlib.util.spec_from_file_location(f"abench_user_{p.stem}", p)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        raise OptionError(f"--ablation-module {path}: import failed: {type(err).__name__}: {err}") from None
    added = list(dict.fromkeys(REGISTRATIONS[before:]))
    if not added:
        raise OptionError(f"--ablation-module {path}: it registered no method (use @ablations.register('name'))")
    return added


class Session:
    """Holds the selection, the per-task data (built once per process) and the collected rows."""

    def __init__(self, options: SessionOptions):
        o = self.options = options
        self.device = o.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise OptionError("--device cuda: no CUDA device is available")
        self.device = worker_device(self.device)
        try:
            memory.set_max_batch_mb(o.max_batch_mb)
        except ValueError as err:
            raise OptionError(str(err)) from None
        for flag, count in (("--n-fit", o.n_fit), ("--n-eval", o.n_eval), ("--threads", o.threads)):
            if not (isinstance(count, int) and count >= 1):  # 0 or -5 would run and report an empty check as passed
                raise OptionError(f"{flag} must be an integer >= 1, got {count!r}")
        torch.set_num_threads(o.threads)
        # every option that is only used at the end is checked now, before any task is loaded
        self.baseline = read_baseline(o.compare) if o.compare else None
        if o.save_baseline:
            check_output_file("--save-baseline", o.save_baseline)
        self.report_dir = o.report_dir or (LOCAL_REPORT_DIR if o.explicit else DEFAULT_REPORT_DIR)
        self.report_dir_note = (f"--report-dir not given and the selection is not the default ({', '.join(o.explicit)}): "
                                f"writing {LOCAL_REPORT_DIR}, not the tracked {DEFAULT_REPORT_DIR}"
                                if o.explicit and not o.report_dir else None)
        check_report_dir(self.report_dir)
        self.rank_against = o.rank_against or (
            COMMITTED_LEADERBOARD if o.ablation_modules and Path(COMMITTED_LEADERBOARD).is_file() else None)
        if self.rank_against and not Path(self.rank_against).is_file():
            raise OptionError(f"--rank-against {self.rank_against}: no such file")
        if not o.tolerance >= 0:
            raise OptionError(f"--tolerance must be >= 0, got {o.tolerance}")
        plugin_methods: list[str] = []
        for path in o.ablation_modules:
            plugin_methods += load_ablation_module(path)
        module_tasks: list[str] = []
        try:
            load_entry_point_tasks(self.device)  # installed task plugins: selectable by name / family
            for path in o.task_modules:
                try:
                    module_tasks += load_task_file(path, self.device)
                except TaskSpecError as err:
                    raise TaskSpecError(f"--task-module {path}: {err}") from None
        except TaskSpecError as err:
            raise OptionError(str(err)) from None
        self.convention = o.effect_convention
        try:
            self.tasks = resolve_task_names(o.tasks) if o.tasks or not module_tasks else []
        except KeyError as err:
            raise OptionError(err.args[0]) from None
        self.tasks = list(dict.fromkeys(self.tasks + module_tasks))
        self.tasks_selected = bool(o.tasks or module_tasks)
        self.methods = select_methods(o.methods, o.scale_sweep, plugin_methods)
        self.data: dict[str, tuple] = {}
        self.rows: list[Row] = []
        self.speed: dict = {}
        self.checks: dict[str, GroundTruthCheck] = {}  # task -> ground-truth check (tasks with a high-level model)
        self.failed_tasks: dict[str, dict] = {}  # task -> {family, stage, reason}: set-up failed, cached
        self._reported: set[str] = set()  # tasks whose set-up failure a method case already reported
        self.deselection_notes: list[str] = []  # benchmarks the runner left out of this run, and how to bring them back
        self.setup_selected: set[str] = set()  # tasks whose test_task_setup is among the selected tests
        self.journal = Path(self.report_dir) / JOURNAL
        self.resumed: dict[tuple[str, str], Row] = {}  # (task, method) -> row saved by the interrupted run
        if o.resume:
            self.resumed = {r.key: r for r in read_journal(self.journal)["rows"]}
        self.reused = 0  # rows this process took from the journal instead of computing them
        self.journal_note: str | None = None  # what became of an interrupted run's journal in a run without --resume
        # what the end of the run produced (finish / write_partial), for the terminal summary
        self.doc: Leaderboard | None = None
        self.written: list[Path] = []
        self.ranks: list[str] = []
        self.regressions: list[dict] = []
        self.partial_note: str | None = None

    def leaderboard_tasks(self) -> list[str]:
        """The selected tasks that get leaderboard rows: every one but cost-only tasks (the ``scale`` family: no ground truth)."""
        from tasks.scale import is_cost_only

        return [t for t in self.tasks if not (t in LOADERS and is_cost_only(LOADERS[t][0]))]

    def cases(self) -> list[tuple[str, str]]:
        return [(t, m) for t in self.leaderboard_tasks() for m in self.methods]

    def setup_task(self, name: str) -> str | None:
        """Load the task, build its data and check its ground truth, once per process (a failure
        is cached too). Returns None, or the one-line reason it failed."""
        if name not in self.data and name not in self.failed_tasks:
            stage = "load"
            try:
                task = load_task(name, self.device)
                o = self.options
                stage = "data"
                check_data_budget(task, o.n_fit, o.n_eval)  # before any input is drawn
                fit, ev = bench.task_data(task, o.n_fit, o.n_eval, o.seed)
                stage = "ground-truth check"
                check = check_task(task, ev)  # every leaderboard checks its own ground truth
            except Exception as err:  # noqa: BLE001 - a broken task is reported, the others run
                self.failed_tasks[name] = {"family": LOADERS[name][0] if name in LOADERS else None, "stage": stage,
                                           "reason": task_failure_reason(err)}
            else:
                self.data[name] = (task, fit, ev)
                if check is not None:
                    self.checks[name] = check
                    self.save({"check": check.to_json()})
            if name in self.failed_tasks:
                self.save({"failed_task": {name: self.failed_tasks[name]}})
        failed = self.failed_tasks.get(name)
        return None if failed is None else f"task {name} failed at {failed['stage']}: {failed['reason']}"

    def method_case_reports(self, name: str) -> bool:
        """Whether a method case of ``name`` reports (fails with) its set-up failure: only when
        ``test_task_setup[name]`` is not selected (it reports it), and only once per process."""
        first = name not in self._reported and name not in self.setup_selected
        self._reported.add(name)
        return first

    def task_and_data(self, name: str):
        reason = self.setup_task(name)
        if reason:
            raise TaskSetupError(reason)
        return self.data[name]

    def set_aside_journal(self) -> None:
        """A run without ``--resume`` starts afresh: an interrupted run's journal is renamed (``.discarded``),
        not deleted, and ``journal_note`` says how many finished rows it holds and how to reuse them."""
        if not self.journal.is_file():
            return
        n_rows = len(read_journal(self.journal)["rows"])
        aside = self.journal.with_name(self.journal.name + ".discarded")
        self.journal.replace(aside)
        if n_rows:
            self.journal_note = (f"an interrupted run's {n_rows} finished rows were not reused (no --resume): kept as {aside}; "
                                 f"to reuse them instead, move it back to {self.journal} and rerun with --resume")

    def run_case(self, case: tuple[str, str]) -> Row:
        row = self.resumed.get(case)
        if row is not None:
            self.reused += 1
        else:
            task, fit, ev = self.task_and_data(case[0])
            row = bench.run_row(task, case[1], fit, ev, self.convention)
        self.rows.append(row)
        self.save({"row": row.to_json()})
        return row

    def save(self, entry: dict) -> None:
        """Journal one finished row / check / failed task (what an interrupted run keeps)."""
        append_entry(self.journal, entry)

    def sorted_rows(self, rows: list[Row]) -> list[Row]:
        order = {c: i for i, c in enumerate(self.cases())}
        return sorted(rows, key=lambda r: order.get(r.key, len(order)))

    def worker_output(self) -> dict[str, str]:
        """What an xdist worker hands the controller: rows, speed, checks and failed tasks as JSON strings."""
        return {"abench_rows": json.dumps([r.to_json() for r in self.rows]), "abench_speed": json.dumps(self.speed),
                "abench_checks": json.dumps({t: c.to_json() for t, c in self.checks.items()}),
                "abench_failed_tasks": json.dumps(self.failed_tasks)}

    def absorb_worker(self, out: dict[str, str]) -> None:
        """The controller's side of ``worker_output``: a worker's results joined to this session's."""
        if "abench_rows" in out:
            self.rows.extend(Row.from_json(r, "a worker's row") for r in json.loads(out["abench_rows"]))
        for key, mine in (("abench_speed", self.speed), ("abench_failed_tasks", self.failed_tasks)):
            if key in out:
                mine.update(json.loads(out[key]))
        if "abench_checks" in out:
            self.checks.update({t: GroundTruthCheck.from_json(c, "a worker's check") for t, c in json.loads(out["abench_checks"]).items()})

    def document(self, rows: list[Row], speed: dict) -> Leaderboard:
        o = self.options
        env = leaderboard.environment(
            self.device,
            {"seed": o.seed, "n_fit": o.n_fit, "n_eval": o.n_eval, "torch_threads": torch.get_num_threads()},
        )
        order = {t: i for i, t in enumerate(self.tasks)}
        checks = dict(sorted(self.checks.items(), key=lambda kv: order.get(kv[0], len(order))))
        # "selection": the serial order of tasks and methods, so `python -m abench merge` can put the rows of
        # shards (pytest-split groups, --tasks subsets) back in the order one process writes them
        extra = {"selection": {"tasks": list(self.tasks), "methods": list(self.methods)},
                 "failed_tasks": dict(sorted(self.failed_tasks.items(), key=lambda kv: order.get(kv[0], len(order))))}
        if speed:
            extra["speed"] = speed
        return leaderboard.build(self.sorted_rows(rows), env, extra, checks, effect_convention=CONVENTIONS[self.convention])

    def notes(self) -> list[str]:
        """What the terminal says before the leaderboard: benchmarks left out, where the reports went, what became of
        an interrupted run's rows, and whether this run is itself partial."""
        out = list(self.deselection_notes)
        out += [n for n in (self.report_dir_note, self.journal_note) if n]
        if self.options.resume:
            out.append(f"--resume: reused {self.reused} finished rows of the interrupted run ({len(self.resumed)} in {self.journal}); "
                       f"computed {len(self.rows) - self.reused} in this process")
        if self.partial_note:
            out.append(self.partial_note)
        return out

    def finish(self) -> None:
        """A complete run: write the leaderboard, drop the journal and any partial file (nothing to resume),
        rank new methods, save the baseline and compare against ``--compare``'s (``self.regressions``)."""
        o = self.options
        doc = self.document(self.rows, self.speed)
        self.written = leaderboard.write(doc, self.report_dir)
        self.doc = doc
        self.journal.unlink(missing_ok=True)  # complete: nothing to resume
        (Path(self.report_dir) / PARTIAL).unlink(missing_ok=True)
        if self.rank_against:
            self.ranks = rank_against(doc, self.rank_against, self.methods)
        if o.save_baseline:
            Path(o.save_baseline).write_text(json.dumps(leaderboard.strip_volatile(doc.to_json()), indent=1))
        if o.compare:
            self.regressions = compare(doc, self.baseline, o.tolerance)

    def write_partial(self) -> None:
        """An interrupted run: the rows finished so far (this process's and every worker's, from the
        journal) go to ``leaderboard.partial.json``, marked partial; the tracked reports are not touched."""
        saved = read_journal(self.journal)
        rows = {r.key: r for r in saved["rows"] + self.rows}
        self.checks = {**{t: GroundTruthCheck.from_json(c, f"{self.journal}: check") for t, c in saved["checks"].items()},
                       **self.checks}
        self.failed_tasks = {**saved["failed_tasks"], **self.failed_tasks}
        doc = self.document(list(rows.values()), self.speed).with_extra(
            partial={"reason": "interrupted", "rows": len(rows), "cases": len(self.cases()),
                     "resume": f"rerun the same command with --resume (rows kept in {self.journal})"})
        path = Path(self.report_dir) / PARTIAL
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc.to_json(), indent=1))
        tmp.replace(path)
        self.partial_note = (f"interrupted: {len(rows)} of {len(self.cases())} rows saved to {path} (marked partial); "
                             f"{self.report_dir}/leaderboard.* not written; finish with --resume")


def worker_device(device: str, worker: str | None = None, count: int | None = None) -> str:
    """pytest-xdist worker ``gwN`` on ``--device cuda`` takes visible GPU ``N mod count``, so
    ``pytest benchmarks -n <GPUs> --device cuda`` runs one worker per GPU. Otherwise ``device``.
    (The session knows the runner's worker variable; the engine below it never does.)"""
    worker = os.environ.get("PYTEST_XDIST_WORKER") if worker is None else worker
    if device != "cuda" or not worker or not worker.startswith("gw"):
        return device
    count = torch.cuda.device_count() if count is None else count
    return f"cuda:{int(worker[2:]) % count}" if count > 1 else device


def select_methods(spec: str | None, scale_sweep: bool, plugin_methods: list[str]) -> list[str]:
    """The canonical method names of ``--methods`` (``default``: the built-in set), then the scale sweep's
    and the ablation modules' methods where not named already."""
    if spec is not None and not split_specs(spec):
        raise OptionError(f"--methods {spec!r}: names no method (omit the option for the default set)")

    def canonical(names: list[str]) -> list[str]:
        out = []
        for n in names:
            try:
                out.append(make_method(n).name)
            except (KeyError, ValueError) as err:
                raise OptionError(f"--methods: {err.args[0]}") from None
        return out

    # what --methods names must not repeat; the sweep and a module's methods join where not named already
    methods = canonical([m for part in split_specs(spec or "default") for m in (DEFAULT_METHODS if part == "default" else [part])])
    twice = sorted({m for m in methods if methods.count(m) > 1})
    if twice:
        raise OptionError(f"--methods: {', '.join(twice)} selected more than once (directly or through 'default')")
    extra = canonical((SCALE_SWEEP_METHODS if scale_sweep else []) + plugin_methods)
    return methods + [m for m in dict.fromkeys(extra) if m not in methods]


def task_failure_reason(err: BaseException) -> str:
    """One line: a load error's own message (it names the file and field), else type, message and where."""
    from tasks.siit import SiitLoadError

    if isinstance(err, SiitLoadError) or (isinstance(err, MemoryError) and str(err)):  # their messages name the file / option
        return str(err)
    if isinstance(err, KeyError) and err.args and isinstance(err.args[0], str):
        return err.args[0]
    return f"{type(err).__name__}: {err}{bench.raise_site(err)}".replace("\n", " ")


def rank_against(doc: Leaderboard, path: str, methods: list[str]) -> list[str]:
    """Lines ranking this run's methods in ``path``'s leaderboard with this run's rows merged in
    (methods the committed file already has keep its rows)."""
    from abench.merge import MergeError, merge

    base = Leaderboard.from_json(json.loads(Path(path).read_text()), path)
    have = {r.method for r in base.rows}
    new = [m for m in methods if m not in have]
    if not new:
        return [f"rank against {path}: every method of this run is already in it"]
    mine = replace(doc, rows=[r for r in doc.rows if r.method in new])
    try:
        merged, _ = merge([base, mine], [path, "this run"])
    except MergeError as err:
        return [f"rank against {path}: cannot merge ({err})"]
    lines = []
    for fam, summ in merged.summary_by_family.items():
        by_name = {x.method: x for x in summ}
        reference = (merged.recommendation.get(fam) or {}).get("reference")
        order = ranking(summ, reference)  # the recommendation's order: separation tier, then faithfulness
        for m in new:
            if m in order:
                x = by_name[m]
                lines.append(f"{m} in family {fam}: rank {order.index(m) + 1} of {len(order)} against {path} "
                             f"(pooled AUROC {tables.fmt(x.pooled_auroc)}, mean faithfulness {tables.fmt(x.get('mean_faithfulness'))})")
    return [f"ranks: {RANKING_RULE} (abench/recommend.py)"] + lines if lines else lines
