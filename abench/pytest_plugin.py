"""The pytest layer: options, task x method parametrisation, row collection, reports.

Only this module knows about pytest. ``pytest benchmarks`` parametrises every selected task
against every selected method (test ids ``reverse-resample``), collects one row per test (also
across pytest-xdist workers), and at the end prints the leaderboard and writes it to the report
folder. ``--compare`` checks the result against a saved baseline and fails the run on a regression.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from abench import bench, leaderboard
from abench.data_budget import check_data_budget
from interventions import memory
from abench.report import tables
from abench.ground_truth import check_task
from abench.compare import compare, format_regressions
from abench.conventions import CONVENTIONS, DEFAULT_CONVENTION
from ablations import DEFAULT_METHODS, SCALE_SWEEP_METHODS, make_method
from ablations.base import REGISTRATIONS
from interventions.methodspec import split_specs
from tasks.registry import LOADERS, load_entry_point_tasks, load_task, load_task_file, resolve_task_names
from tasks.user_tasks import TaskSpecError

ROWS_KEY = "abench_rows"
# In the report folder: every finished row, check and failed task, one JSON line each, as they finish
# (what an interrupted run keeps and --resume reads); the partial leaderboard of an interrupted run;
# the lock that keeps a second run from writing the same folder.
JOURNAL = "leaderboard.partial.jsonl"
PARTIAL = "leaderboard.partial.json"
LOCK = ".abench.lock"
DEFAULT_REPORT_DIR = "reports"
LOCAL_REPORT_DIR = "reports/local"
COMMITTED_LEADERBOARD = "reports/leaderboard.json"
# The peer comparison (issue: speed against the peers) is its own job, minutes long: a plain
# `pytest benchmarks` leaves it out unless --peers is given or the file is named.
PEERS_FILE = "test_peers.py"
SCALE_FILE = "test_scale.py"

# Named selections; explicit --tasks/--methods/--n-fit/--n-eval override a preset's values.
PRESETS = {
    # a fixed subset, so the CI gate's cost does not grow with every shipped model: SIIT models of each
    # shape (counting, length-8 inputs, 40 nodes, numerical, a compiled circuit) and three tracr programs
    "ci": {"tasks": "siit_hist,siit_length,siit_prev_token,siit_first_token_wide,siit_frac_prevs,siit_count_less_freq_compiled,"
                    "reverse,frac_prevs,pair_balance", "methods": "default",
           "n_fit": 64, "n_eval": 128},
}


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("abench", "ablation-method leaderboard")
    g.addoption("--preset", default=None, choices=sorted(PRESETS), help="a named selection (ci: a CPU-sized subset for CI)")
    g.addoption("--tasks", default=None, help="comma-separated task names or families (siit, siit_backup, tracr, all); default: all")
    g.addoption("--methods", default=None, help="comma-separated method names, e.g. zero,mean,'scaled_resample[s=0.5]'; 'default' = the built-in set")
    g.addoption("--scale-sweep", action="store_true", help="add the scaled-resample sweep s in 0,0.1,...,10")
    g.addoption("--ablation-module", action="append", default=[], metavar="FILE.py", help="a Python file registering extra methods; they join the leaderboard")
    g.addoption("--report-dir", default=None, help="folder for leaderboard.{json,md,tex,html} (default: reports for the "
                "default selection, reports/local for any other: the tracked reports are never overwritten by a partial selection)")
    g.addoption("--resume", action="store_true", help="reuse the rows an interrupted run with the same --report-dir saved "
                f"({JOURNAL}) and compute only the missing ones")
    g.addoption("--rank-against", default=None, metavar="LEADERBOARD.json", help="after the run, merge its rows into this "
                "leaderboard and print each new method's rank (default with --ablation-module: reports/leaderboard.json)")
    g.addoption("--device", default=None, choices=["cpu", "cuda"], help="default: cuda when available, else cpu")
    g.addoption("--threads", type=int, default=1, help="torch CPU threads (default 1: the suite's models are small, and "
                "OpenMP threads spin-wait when another process holds a core; use -n N to run on N cores)")
    g.addoption("--max-batch-mb", type=float, default=None, help="memory budget of one stacked forward in MiB (default: a "
                "quarter of the device's free memory); smaller budgets run more, smaller forwards, same numbers")
    g.addoption("--n-fit", type=int, default=None, help=f"inputs methods fit on, per task (default {bench.DEFAULT_N_FIT})")
    g.addoption("--n-eval", type=int, default=None, help=f"inputs effects are measured on, per task (default {bench.DEFAULT_N_EVAL})")
    g.addoption("--bench-seed", type=int, default=bench.DEFAULT_SEED, help="seed of the data sets and derangements")
    g.addoption("--compare", default=None, metavar="BASELINE.json", help="fail when a row or method summary worsens beyond --tolerance")
    g.addoption("--tolerance", type=float, default=0.02, help="allowed worsening of AUROC, gap, FPR and out-of-circuit effect (default 0.02)")
    g.addoption("--save-baseline", default=None, metavar="BASELINE.json", help="write this run's leaderboard as a baseline")
    g.addoption("--task-module", action="append", default=[], metavar="FILE.py", help="a Python file defining TASKS = [TaskSpec(...)]; "
                "its tasks join the selection (without --tasks they are the selection)")
    g.addoption("--effect-convention", default=DEFAULT_CONVENTION, choices=sorted(CONVENTIONS), help="suite (default): every non-BOS "
                "cell against the clean output; iit: iit's check_causal_effect numbers (high-level labels; see abench/conventions.py)")
    g.addoption("--peers", action="store_true", help=f"also run {PEERS_FILE} (speed against TL hooks, pyvene, auto-circuit) "
                "in a run that does not name it; without this flag it runs only when named")


def load_ablation_module(path: str) -> list[str]:
    """Import a user's method file; return the names it registered."""
    p = Path(path)
    if not p.is_file():
        raise pytest.UsageError(f"--ablation-module: no such file {path!r}")
    before = len(REGISTRATIONS)
    spec = importlib.util.spec_from_file_location(f"abench_user_{p.stem}", p)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        raise pytest.UsageError(f"--ablation-module {path}: import failed: {type(err).__name__}: {err}") from None
    added = list(dict.fromkeys(REGISTRATIONS[before:]))
    if not added:
        raise pytest.UsageError(f"--ablation-module {path}: it registered no method (use @ablations.register('name'))")
    return added


class Session:
    """Holds the selection, the per-task data (built once per process) and the collected rows."""

    def __init__(self, config: pytest.Config):
        self.config = config
        preset = PRESETS.get(config.getoption("--preset") or "", {})
        defaults = {"--tasks": preset.get("tasks"), "--methods": preset.get("methods"),
                    "--n-fit": preset.get("n_fit", bench.DEFAULT_N_FIT), "--n-eval": preset.get("n_eval", bench.DEFAULT_N_EVAL)}

        def opt(name):
            value = config.getoption(name)
            return defaults[name] if value is None and name in defaults else value

        self.opt = opt
        self.device = opt("--device") or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise pytest.UsageError("--device cuda: no CUDA device is available")
        self.device = memory.worker_device(self.device)  # xdist worker gwN -> GPU N mod count (interventions.memory)
        try:
            memory.set_max_batch_mb(config.getoption("--max-batch-mb"))
        except ValueError as err:
            raise pytest.UsageError(str(err)) from None
        threads = config.getoption("--threads")
        if threads < 1:
            raise pytest.UsageError("--threads must be >= 1")
        torch.set_num_threads(threads)
        # every option that is only used at the end is checked now, before any task is loaded
        base = config.getoption("--compare")
        self.baseline = read_baseline(base) if base else None
        if config.getoption("--save-baseline"):
            check_output_file("--save-baseline", config.getoption("--save-baseline"))
        explicit = [o for o in ("--preset", "--tasks", "--methods", "--task-module", "--ablation-module", "--n-fit", "--n-eval")
                    if config.getoption(o) not in (None, [])] + (["--bench-seed"] if config.getoption("--bench-seed") != bench.DEFAULT_SEED else [])
        self.report_dir = config.getoption("--report-dir") or (LOCAL_REPORT_DIR if explicit else DEFAULT_REPORT_DIR)
        self.report_dir_note = (f"--report-dir not given and the selection is not the default ({', '.join(explicit)}): "
                                f"writing {LOCAL_REPORT_DIR}, not the tracked {DEFAULT_REPORT_DIR}"
                                if explicit and not config.getoption("--report-dir") else None)
        check_report_dir(self.report_dir)
        self.rank_against = config.getoption("--rank-against") or (
            COMMITTED_LEADERBOARD if config.getoption("--ablation-module") and Path(COMMITTED_LEADERBOARD).is_file() else None)
        if self.rank_against and not Path(self.rank_against).is_file():
            raise pytest.UsageError(f"--rank-against {self.rank_against}: no such file")
        if not config.getoption("--tolerance") >= 0:
            raise pytest.UsageError(f"--tolerance must be >= 0, got {config.getoption('--tolerance')}")
        plugin_methods: list[str] = []
        for path in opt("--ablation-module"):
            plugin_methods += load_ablation_module(path)
        module_tasks: list[str] = []
        try:
            load_entry_point_tasks(self.device)  # installed task plugins: selectable by name / family
            for path in opt("--task-module"):
                try:
                    module_tasks += load_task_file(path, self.device)
                except TaskSpecError as err:
                    raise TaskSpecError(f"--task-module {path}: {err}") from None
        except TaskSpecError as err:
            raise pytest.UsageError(str(err)) from None
        self.convention = opt("--effect-convention")
        try:
            self.tasks = resolve_task_names(opt("--tasks")) if opt("--tasks") or not module_tasks else []
        except KeyError as err:
            raise pytest.UsageError(err.args[0]) from None
        self.tasks = list(dict.fromkeys(self.tasks + module_tasks))
        self.tasks_selected = bool(opt("--tasks") or module_tasks)
        spec = opt("--methods")
        if spec is not None and not split_specs(spec):
            raise pytest.UsageError(f"--methods {spec!r}: names no method (omit the option for the default set)")
        def canonical(names: list[str]) -> list[str]:
            out = []
            for n in names:
                try:
                    out.append(make_method(n).name)
                except (KeyError, ValueError) as err:
                    raise pytest.UsageError(f"--methods: {err.args[0]}") from None
            return out

        # what --methods names must not repeat; the sweep and a module's methods join where not named already
        self.methods = canonical([m for part in split_specs(spec or "default") for m in (DEFAULT_METHODS if part == "default" else [part])])
        twice = sorted({m for m in self.methods if self.methods.count(m) > 1})
        if twice:
            raise pytest.UsageError(f"--methods: {', '.join(twice)} selected more than once (directly or through 'default')")
        extra = canonical((SCALE_SWEEP_METHODS if opt("--scale-sweep") else []) + plugin_methods)
        self.methods += [m for m in dict.fromkeys(extra) if m not in self.methods]
        self.data: dict[str, tuple] = {}
        self.rows: list[dict] = []
        self.speed: dict = {}
        self.checks: dict[str, dict] = {}  # task -> ground-truth check (tasks with a high-level model)
        self.failed_tasks: dict[str, dict] = {}  # task -> {family, stage, reason}: set-up failed, cached
        self._reported: set[str] = set()  # tasks whose set-up failure a method case already reported
        self.peers_deselected = 0  # peer-comparison tests left out of this run (not named, no --peers)
        self.setup_selected: set[str] = set()  # tasks whose test_task_setup is among the selected tests
        self.journal = Path(self.report_dir) / JOURNAL
        self.resumed: dict[tuple[str, str], dict] = {}  # (task, method) -> row saved by the interrupted run
        if config.getoption("--resume"):
            self.resumed = {(r["task"], r["method"]): r for r in read_journal(self.journal)["rows"]}

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
                opt = self.opt
                stage = "data"
                check_data_budget(task, opt("--n-fit"), opt("--n-eval"))  # before any input is drawn
                fit, ev = bench.task_data(task, opt("--n-fit"), opt("--n-eval"), opt("--bench-seed"))
                stage = "ground-truth check"
                check = check_task(task, ev)  # every leaderboard checks its own ground truth
            except Exception as err:  # noqa: BLE001 - a broken task is reported, the others run
                self.failed_tasks[name] = {"family": LOADERS[name][0] if name in LOADERS else None, "stage": stage,
                                           "reason": task_failure_reason(err)}
            else:
                self.data[name] = (task, fit, ev)
                if check is not None:
                    self.checks[name] = check
                    self.save({"check": check})
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

    def run_case(self, case: tuple[str, str]) -> dict:
        row = self.resumed.get(case)
        if row is None:
            task, fit, ev = self.task_and_data(case[0])
            row = bench.run_row(task, case[1], fit, ev, self.convention)
        self.rows.append(row)
        self.save({"row": row})
        return row

    def save(self, entry: dict) -> None:
        """Append one finished row / check / failed task to the journal (one write per line, so
        pytest-xdist workers appending together do not interleave lines)."""
        line = (json.dumps(entry) + "\n").encode()
        fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def sorted_rows(self, rows: list[dict]) -> list[dict]:
        order = {c: i for i, c in enumerate(self.cases())}
        return sorted(rows, key=lambda r: order.get((r["task"], r["method"]), len(order)))

    def document(self, rows: list[dict], speed: dict) -> dict:
        opt = self.opt
        env = leaderboard.environment(
            self.device,
            {"seed": opt("--bench-seed"), "n_fit": opt("--n-fit"), "n_eval": opt("--n-eval"), "torch_threads": torch.get_num_threads()},
        )
        order = {t: i for i, t in enumerate(self.tasks)}
        checks = dict(sorted(self.checks.items(), key=lambda kv: order.get(kv[0], len(order))))
        # "selection": the serial order of tasks and methods, so `python -m abench merge` can put the rows of
        # shards (pytest-split groups, --tasks subsets) back in the order one process writes them
        extra = {"selection": {"tasks": list(self.tasks), "methods": list(self.methods)},
                 "failed_tasks": dict(sorted(self.failed_tasks.items(), key=lambda kv: order.get(kv[0], len(order))))}
        if speed:
            extra["speed"] = speed
        if self.convention != DEFAULT_CONVENTION:  # the default keeps the leaderboard's own description
            extra["effect_convention"] = CONVENTIONS[self.convention]
        return leaderboard.build(self.sorted_rows(rows), env, extra, checks)


class TaskSetupError(RuntimeError):
    """A task could not be loaded, given data or checked; the message is the one-line reason."""


def task_failure_reason(err: BaseException) -> str:
    """One line: a load error's own message (it names the file and field), else type, message and where."""
    from tasks.siit import SiitLoadError

    if isinstance(err, SiitLoadError) or (isinstance(err, MemoryError) and str(err)):  # their messages name the file / option
        return str(err)
    if isinstance(err, KeyError) and err.args and isinstance(err.args[0], str):
        return err.args[0]
    return f"{type(err).__name__}: {err}{bench.raise_site(err)}".replace("\n", " ")


def read_baseline(path: str) -> dict:
    """The ``--compare`` baseline, read and checked for the shape ``compare`` needs: a usage error
    naming the option, the file and what is wrong, before any work."""
    from abench.compare import ROW_METRICS, SUMMARY_METRICS

    def bad(what: str) -> pytest.UsageError:
        return pytest.UsageError(f"--compare {path}: {what} (write a baseline with --save-baseline)")

    p = Path(path)
    if not p.is_file():
        raise bad("no such baseline file")
    try:
        doc = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise bad(f"cannot be read ({err})") from None
    except json.JSONDecodeError as err:
        raise bad(f"not JSON ({err})") from None

    def number(v) -> bool:
        return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))

    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list) or not isinstance(doc.get("summary_by_family"), dict):
        got = type(doc).__name__ if not isinstance(doc, dict) else f"keys {sorted(doc)[:8]}"
        raise bad(f"not a leaderboard (an object with 'rows': list and 'summary_by_family': object), got {got}")
    for i, r in enumerate(doc["rows"]):
        if not isinstance(r, dict) or not all(isinstance(r.get(k), str) for k in ("task", "method", "family")):
            raise bad(f"row {i} needs string fields 'task', 'method' and 'family', got {str(r)[:80]}")
        for m in ROW_METRICS:
            if not number(r.get(m)):
                raise bad(f"row {i} ({r['task']}-{r['method']}): {m} must be a number or null, got {r[m]!r}")
    for fam, summ in doc["summary_by_family"].items():
        if not isinstance(summ, list):
            raise bad(f"summary_by_family[{fam!r}] must be a list, got {type(summ).__name__}")
        for s in summ:
            if not isinstance(s, dict) or not isinstance(s.get("method"), str):
                raise bad(f"summary_by_family[{fam!r}]: every entry needs a string 'method', got {str(s)[:80]}")
            for m in SUMMARY_METRICS:
                if not number(s.get(m)):
                    raise bad(f"summary_by_family[{fam!r}] method {s['method']}: {m} must be a number or null, got {s[m]!r}")
    if not isinstance(doc.get("excluded_tasks") or {}, dict):
        raise bad("excluded_tasks must be an object")
    return doc


def read_journal(path: Path) -> dict:
    """Rows (last one of each (task, method) wins), checks and failed tasks saved in a journal; a
    torn last line (the process was killed mid-write) is ignored."""
    out = {"rows": {}, "checks": {}, "failed_tasks": {}}
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "row" in entry:
            out["rows"][(entry["row"]["task"], entry["row"]["method"])] = entry["row"]
        elif "check" in entry:
            out["checks"][entry["check"]["task"]] = entry["check"]
        elif "failed_task" in entry:
            out["failed_tasks"].update(entry["failed_task"])
    return {**out, "rows": list(out["rows"].values())}


def acquire_lock(folder: str) -> Path:
    """Take ``folder/.abench.lock`` for this process; a usage error when a live process holds it."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    lock = Path(folder) / LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                pid = int(lock.read_text().split()[0])
                os.kill(pid, 0)
            except (ValueError, IndexError, ProcessLookupError, FileNotFoundError):
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            except PermissionError:
                pass  # alive, another user's
            raise pytest.UsageError(f"--report-dir {folder}: another run (pid {pid}) is writing it ({lock}); wait for it "
                                    f"or pass another --report-dir") from None
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        return lock
    raise pytest.UsageError(f"--report-dir {folder}: could not take {lock}")


def check_output_file(option: str, path: str) -> None:
    p = Path(path)
    if p.is_dir():
        raise pytest.UsageError(f"{option} {path}: is a folder, not a file")
    if not p.parent.is_dir():
        raise pytest.UsageError(f"{option} {path}: folder {str(p.parent)!r} does not exist")
    if not os.access(p.parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise pytest.UsageError(f"{option} {path}: not writable")


def check_report_dir(path: str) -> None:
    """``--report-dir`` must be a folder that exists and takes a file, or one that can be created."""
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise pytest.UsageError(f"--report-dir {path}: exists and is not a folder")
        try:
            with tempfile.TemporaryFile(dir=p):
                pass
        except OSError as err:
            raise pytest.UsageError(f"--report-dir {path}: not writable ({err.strerror or err})") from None
        return
    anc = p.absolute().parent
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise pytest.UsageError(f"--report-dir {path}: cannot be created ({str(anc)!r} is not a folder)")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise pytest.UsageError(f"--report-dir {path}: cannot be created ({str(anc)!r} is not writable)")


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "leaderboard: a task x method leaderboard case")
    # Validates names now, so a bad option is a usage error (one line, exit 4); loads no task yet.
    config._abench = s = Session(config)
    if not _is_worker(config) and _runs_benchmarks(config):
        s.lock = acquire_lock(s.report_dir)
        if not config.getoption("--resume"):
            s.journal.unlink(missing_ok=True)  # a fresh run: rows of an earlier interrupted one are not reused
        # SIGTERM (a CI runner cancelling, `kill`) ends the run as Ctrl-C does: finished rows go to the
        # partial file, the tracked reports stay as they were
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _terminate)


BENCHMARKS_DIR = Path(__file__).resolve().parent.parent / "benchmarks"


def _runs_benchmarks(config: pytest.Config) -> bool:
    """Whether this run may write the report folder: it names the benchmarks folder, a file in it, or a
    folder holding it (a `pytest tests` run beside a benchmark run must neither take the lock nor reset
    the journal)."""
    for arg in config.args:
        p = Path(arg.split("::")[0]).resolve()
        if p == BENCHMARKS_DIR or BENCHMARKS_DIR in p.parents or p in BENCHMARKS_DIR.parents:
            return True
    return False


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_unconfigure(config: pytest.Config) -> None:
    s = getattr(config, "_abench", None)
    lock = getattr(s, "lock", None)
    if lock is not None and lock.is_file() and lock.read_text().split()[:1] == [str(os.getpid())]:
        lock.unlink()


def get_session(config: pytest.Config) -> Session:
    return config._abench


@pytest.hookimpl(trylast=True)  # after -k / -m deselection
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    s = get_session(config)
    named = {Path(a.split("::")[0]).name for a in config.args}
    if not (PEERS_FILE in named or config.getoption("--peers")):
        peers = [it for it in items if it.path.name == PEERS_FILE]
        if peers:
            config.hook.pytest_deselected(items=peers)
            items[:] = [it for it in items if it.path.name != PEERS_FILE]
            s.peers_deselected = len(peers)
    # the scale benchmark (real-shape cost, minutes) is opt-in: named, or its task selected with --tasks
    scale = [it for it in items if it.path.name == SCALE_FILE and SCALE_FILE not in named
             and not (s.tasks_selected and _own_task(it) in s.tasks)]
    if scale:
        config.hook.pytest_deselected(items=scale)
        items[:] = [it for it in items if it not in scale]
    # benchmarks of their own tasks (the floor on every SIIT task, the speed ratios on one task) follow --tasks:
    # a run that selects tasks runs them only on those tasks
    # a benchmark file named on the command line (or the peers' asked for with --peers) runs whatever --tasks says
    exempt = named | ({PEERS_FILE} if config.getoption("--peers") else set())
    if s.tasks_selected:
        off = [it for it in items if _own_task(it) is not None and _own_task(it) not in s.tasks and it.path.name not in exempt]
        if off:
            config.hook.pytest_deselected(items=off)
            items[:] = [it for it in items if it not in off]
    s.setup_selected = {it.callspec.params["leaderboard_task"] for it in items
                        if hasattr(it, "callspec") and "leaderboard_task" in it.callspec.params}


def _own_task(item) -> str | None:
    """The task a non-leaderboard benchmark item measures: its ``task_name`` parameter, or its module's
    ``SPEED_TASK``; None for leaderboard items and tests with no task of their own."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    if "task_name" in params:
        return params["task_name"]
    return getattr(getattr(item, "module", None), "SPEED_TASK", None)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "leaderboard_case" in metafunc.fixturenames:
        cases = get_session(metafunc.config).cases()
        metafunc.parametrize("leaderboard_case", cases, ids=[f"{t}-{m}" for t, m in cases])
    if "leaderboard_task" in metafunc.fixturenames:
        tasks = get_session(metafunc.config).leaderboard_tasks()
        metafunc.parametrize("leaderboard_task", tasks, ids=tasks)


@pytest.fixture(scope="session")
def abench_session(request: pytest.FixtureRequest) -> Session:
    return get_session(request.config)


def pytest_testnodedown(node, error) -> None:  # xdist controller: gather a worker's rows
    s = get_session(node.config)
    out = getattr(node, "workeroutput", {})
    s.rows += json.loads(out.get(ROWS_KEY, "[]"))
    s.checks.update(json.loads(out.get("abench_checks", "{}")))
    s.failed_tasks.update(json.loads(out.get("abench_failed_tasks", "{}")))
    for k, v in json.loads(out.get("abench_speed", "{}")).items():
        s.speed[k] = v


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    s = config._abench
    if s is None:
        return
    if _is_worker(config):
        config.workeroutput[ROWS_KEY] = json.dumps(s.rows)
        config.workeroutput["abench_speed"] = json.dumps(s.speed)
        config.workeroutput["abench_checks"] = json.dumps(s.checks)
        config.workeroutput["abench_failed_tasks"] = json.dumps(s.failed_tasks)
        return
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        write_partial(s)
        return
    if not s.rows and not s.speed and not s.failed_tasks:
        return
    doc = s.document(s.rows, s.speed)
    s.written = leaderboard.write(doc, s.report_dir)
    s.doc = doc
    s.journal.unlink(missing_ok=True)  # complete: nothing to resume
    (Path(s.report_dir) / PARTIAL).unlink(missing_ok=True)
    if s.rank_against:
        s.ranks = rank_against(doc, s.rank_against, s.methods)
    if config.getoption("--save-baseline"):
        Path(config.getoption("--save-baseline")).write_text(json.dumps(leaderboard.strip_volatile(doc), indent=1))
    base = config.getoption("--compare")
    if base:
        s.regressions = compare(doc, s.baseline, config.getoption("--tolerance"))
        if s.regressions:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def write_partial(s: Session) -> None:
    """An interrupted run: the rows finished so far (this process's and every worker's, from the
    journal) go to ``leaderboard.partial.json``, marked partial; the tracked reports are not touched."""
    saved = read_journal(s.journal)
    rows = {(r["task"], r["method"]): r for r in saved["rows"] + s.rows}
    s.checks = {**saved["checks"], **s.checks}
    s.failed_tasks = {**saved["failed_tasks"], **s.failed_tasks}
    doc = s.document(list(rows.values()), s.speed)
    doc["partial"] = {"reason": "interrupted", "rows": len(rows), "cases": len(s.cases()),
                      "resume": f"rerun the same command with --resume (rows kept in {s.journal})"}
    path = Path(s.report_dir) / PARTIAL
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(path)
    s.partial_note = (f"interrupted: {len(rows)} of {len(s.cases())} rows saved to {path} (marked partial); "
                      f"{s.report_dir}/leaderboard.* not written; finish with --resume")


def rank_against(doc: dict, path: str, methods: list[str]) -> list[str]:
    """Lines ranking this run's methods in ``path``'s leaderboard with this run's rows merged in
    (methods the committed file already has keep its rows)."""
    from abench.merge import MergeError, merge

    base = json.loads(Path(path).read_text())
    have = {r["method"] for r in base["rows"]}
    new = [m for m in methods if m not in have]
    if not new:
        return [f"rank against {path}: every method of this run is already in it"]
    mine = dict(doc, rows=[r for r in doc["rows"] if r["method"] in new])
    try:
        merged, _ = merge([base, mine], [path, "this run"])
    except MergeError as err:
        return [f"rank against {path}: cannot merge ({err})"]
    lines = []
    for fam, summ in merged["summary_by_family"].items():
        order = [x["method"] for x in summ]
        for m in new:
            if m in order:
                x = summ[order.index(m)]
                lines.append(f"{m} in family {fam}: rank {order.index(m) + 1} of {len(order)} against {path} "
                             f"(pooled AUROC {tables.fmt(x.get('pooled_auroc'))}, mean faithfulness {tables.fmt(x.get('mean_faithfulness'))})")
    return lines


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    s = config._abench
    if s is None or _is_worker(config):
        return
    tr = terminalreporter
    if s.peers_deselected:
        tr.write_line(f"peer comparison not run ({s.peers_deselected} tests deselected): pytest benchmarks/{PEERS_FILE}, or add --peers")
    if s.report_dir_note:
        tr.write_line(s.report_dir_note)
    if getattr(s, "partial_note", None):
        tr.write_line(s.partial_note)
    if not getattr(s, "doc", None):
        return
    tr.write_sep("=", "ablation-method leaderboard")
    for fam, summ in s.doc["summary_by_family"].items():
        gt = s.doc["ground_truth"][fam]
        tr.write_line(f"family {fam} (ground truth: {gt['intervention']}), pooled over its tasks, best first:")
        if summ:
            tr.write_line(tables.summary_frame(summ).to_string(index=False))
            rec = (s.doc.get("recommendation") or {}).get(fam)
            if rec:
                tr.write_line(f"which method to use on {fam}: {rec['method']}: {rec['why']}")
        else:
            tr.write_line("  (no task of this family to pool: see the ground-truth checks below)")
    checks = s.doc.get("ground_truth_checks") or {}
    if checks:
        tr.write_line("ground-truth checks (reference method separates the circuit; in-circuit LL effect = HL effect):")
        for check in checks.values():
            tr.write_line("  " + tables.check_line(check))
    for fam, summ in (s.doc.get("attribution") or {}).items():
        from abench.report.attribution import attribution_frame

        tr.write_line(f"attribution patching, family {fam} (each estimate beside the exact change it estimates):")
        tr.write_line(attribution_frame(summ).to_string(index=False))
    for t, f in (s.doc.get("failed_tasks") or {}).items():
        tr.write_line(f"FAILED TASK {t} ({f['stage']}; in no row or summary): {f['reason']}")
    failed = [r for r in s.doc["rows"] if r["status"] != "ok"]
    for r in failed:
        tr.write_line(f"FAILED ROW {r['task']}-{r['method']}: {r['error']}")
    for k, v in s.speed.items():
        tr.write_line(f"speed {k}: {v}")
    fitted = [r for r in s.doc["rows"] if r["status"] == "ok" and r["method"].startswith("optimal")]
    for r in fitted:
        tr.write_line(f"fit time {r['method']} on {r['task']}: {r['fit_seconds']:.2f} s, {r['fit_seconds_per_node']:.3f} s per node")
    tr.write_line("wrote " + ", ".join(str(p) for p in s.written))
    for line in getattr(s, "ranks", []):
        tr.write_line(line)
    if config.getoption("--compare"):
        regs = getattr(s, "regressions", [])
        tr.write_sep("=", f"regressions against {config.getoption('--compare')}: {len(regs)}")
        tr.write_line(format_regressions(regs) if regs else "none: every row and method summary within tolerance")
        if regs:  # counted in pytest's last line too ("11 regressions, 153 passed"), so it cannot read as a clean pass
            # report-like entries (other plugins read every stats entry's attributes)
            tr.stats.setdefault("regressions", []).extend(SimpleNamespace(nodeid="", when="call", regression=r) for r in regs)
