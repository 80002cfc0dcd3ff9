"""The pytest layer: options, task x method parametrisation, row collection across workers, the terminal summary.

Only this module knows about pytest. ``pytest benchmarks`` parametrises every selected task
against every selected method (test ids ``reverse-resample``), collects one row per test (also
across pytest-xdist workers), and at the end prints the leaderboard and writes it to the report
folder. ``--compare`` checks the result against a saved baseline and fails the run on a regression.
The hooks read the options into ``SessionOptions`` and call ``abench.session``, which does the work.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from abench.baseline import BaselineError
from abench.compare import format_regressions
from abench.numeric_noise import describe as describe_noise
from abench.conventions import CONVENTIONS
from abench.report.terminal import leaderboard_lines
from abench.report_folder import JOURNAL, ReportFolderError, acquire_lock, release_lock
from abench.session import OptionError, Session, SessionOptions

# The peer comparison (issue: speed against the peers) is its own job, minutes long: a plain
# `pytest benchmarks` leaves it out unless --peers is given or the file is named.
PEERS_FILE = "test_peers.py"
SCALE_FILE = "test_scale.py"
ENGINE_FILES = ("test_floor.py", "test_speed.py")  # the engine's speed on resample: no user method in them

# Named selections; explicit --tasks/--methods/--n-fit/--n-eval override a preset's values.
PRESETS = {
    # a fixed subset, so the CI gate's cost does not grow with every shipped model: SIIT models of each
    # shape (counting, length-8 inputs, 40 nodes, numerical, a compiled circuit) and three tracr programs
    "ci": {"tasks": "siit_hist,siit_length,siit_prev_token,siit_first_token_wide,siit_frac_prevs,siit_count_less_freq_compiled,"
                    "reverse,frac_prevs,pair_balance", "methods": "default",
           "n_fit": 64, "n_eval": 128},
}
DEFAULTS = SessionOptions()  # the options' defaults have one home: the session's
# the options that, given, make the selection not the default one (--bench-seed: when not its default)
SELECTION_OPTIONS = ("--preset", "--tasks", "--methods", "--task-module", "--ablation-module", "--n-fit", "--n-eval")
USAGE_ERRORS = (OptionError, BaselineError, ReportFolderError)  # reported as pytest.UsageError: one line, exit 4

SESSION_KEY = pytest.StashKey[Session]()
LOCK_KEY = pytest.StashKey[Path]()  # the report folder's lock, held by the controller of a benchmark run


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
    g.addoption("--threads", type=int, default=DEFAULTS.threads, help="torch CPU threads (default 1: the suite's models are small, and "
                "OpenMP threads spin-wait when another process holds a core; use -n N to run on N cores)")
    g.addoption("--max-batch-mb", type=float, default=None, help="memory budget of one stacked forward in MiB (default: a "
                "quarter of the device's free memory); smaller budgets run more, smaller forwards, same numbers")
    g.addoption("--n-fit", type=int, default=None, help=f"inputs methods fit on, per task (default {DEFAULTS.n_fit})")
    g.addoption("--n-eval", type=int, default=None, help=f"inputs effects are measured on, per task (default {DEFAULTS.n_eval})")
    g.addoption("--bench-seed", type=int, default=DEFAULTS.seed, help="seed of the data sets and derangements")
    g.addoption("--compare", default=None, metavar="BASELINE.json", help="fail when a row or method summary worsens beyond --tolerance")
    g.addoption("--tolerance", type=float, default=DEFAULTS.tolerance, help="allowed worsening of AUROC, gap, FPR and out-of-circuit effect (default 0.02)")
    g.addoption("--save-baseline", default=None, metavar="BASELINE.json", help="write this run's leaderboard as a baseline")
    g.addoption("--task-module", action="append", default=[], metavar="FILE.py", help="a Python file defining TASKS = [TaskSpec(...)]; "
                "its tasks join the selection (without --tasks they are the selection)")
    g.addoption("--effect-convention", default=DEFAULTS.effect_convention, choices=sorted(CONVENTIONS), help="suite (default): every non-BOS "
                "cell against the clean output; iit: iit's check_causal_effect numbers (high-level labels; see abench/conventions.py)")
    g.addoption("--peers", action="store_true", help=f"also run {PEERS_FILE} (speed against TL hooks, pyvene, auto-circuit) "
                "in a run that does not name it; without this flag it runs only when named")


def session_options(config: pytest.Config) -> SessionOptions:
    """The command line's options as plain values, a ``--preset``'s filling the ones not given."""
    preset = PRESETS.get(config.getoption("--preset") or "", {})

    def given_or(name: str, default):
        value = config.getoption(name)
        return default if value is None else value

    explicit = [o for o in SELECTION_OPTIONS if config.getoption(o) not in (None, [])]
    if config.getoption("--bench-seed") != DEFAULTS.seed:
        explicit.append("--bench-seed")
    return SessionOptions(
        tasks=given_or("--tasks", preset.get("tasks")),
        methods=given_or("--methods", preset.get("methods")),
        n_fit=given_or("--n-fit", preset.get("n_fit", DEFAULTS.n_fit)),
        n_eval=given_or("--n-eval", preset.get("n_eval", DEFAULTS.n_eval)),
        seed=config.getoption("--bench-seed"),
        scale_sweep=config.getoption("--scale-sweep"),
        ablation_modules=tuple(config.getoption("--ablation-module")),
        task_modules=tuple(config.getoption("--task-module")),
        effect_convention=config.getoption("--effect-convention"),
        device=config.getoption("--device"),
        threads=config.getoption("--threads"),
        max_batch_mb=config.getoption("--max-batch-mb"),
        report_dir=config.getoption("--report-dir"),
        resume=config.getoption("--resume"),
        rank_against=config.getoption("--rank-against"),
        compare=config.getoption("--compare"),
        tolerance=config.getoption("--tolerance"),
        save_baseline=config.getoption("--save-baseline"),
        explicit=tuple(explicit),
    )


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "leaderboard: a task x method leaderboard case")
    # Validates names now, so a bad option is a usage error (one line, exit 4); loads no task yet.
    try:
        s = Session(session_options(config))
    except USAGE_ERRORS as err:
        raise pytest.UsageError(str(err)) from None
    config.stash[SESSION_KEY] = s
    if not _is_worker(config) and _runs_benchmarks(config):
        try:
            config.stash[LOCK_KEY] = acquire_lock(s.report_dir)
        except ReportFolderError as err:
            raise pytest.UsageError(str(err)) from None
        if not s.options.resume:
            s.set_aside_journal()  # a fresh run does not reuse an interrupted run's rows, nor silently deletes them
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
    lock = config.stash.get(LOCK_KEY, None)
    if lock is not None:
        release_lock(lock)


def get_session(config: pytest.Config) -> Session:
    return config.stash[SESSION_KEY]


@pytest.hookimpl(trylast=True)  # after -k / -m deselection
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    s = get_session(config)
    named = {Path(a.split("::")[0]).name for a in config.args}
    if not (PEERS_FILE in named or config.getoption("--peers")):
        peers = [it for it in items if it.path.name == PEERS_FILE]
        if peers:
            config.hook.pytest_deselected(items=peers)
            items[:] = [it for it in items if it.path.name != PEERS_FILE]
            s.deselection_notes.append(f"peer comparison not run ({len(peers)} tests deselected): pytest benchmarks/{PEERS_FILE}, "
                                       "or add --peers")
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
    # a method loop (--methods / --ablation-module) times the user's methods: the engine's own benchmarks (the floor,
    # batched vs loop, both on resample) do not concern them and are left out unless their file is named
    if {"--methods", "--ablation-module"} & set(s.options.explicit):
        engine = [it for it in items if it.path.name in ENGINE_FILES and it.path.name not in exempt]
        if engine:
            config.hook.pytest_deselected(items=engine)
            items[:] = [it for it in items if it not in engine]
            s.deselection_notes.append(f"the engine's speed benchmarks not run in a method loop ({len(engine)} tests deselected): "
                                       f"name {' or '.join('benchmarks/' + f for f in ENGINE_FILES)} to run them")
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
    get_session(node.config).absorb_worker(getattr(node, "workeroutput", {}))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    s = config.stash.get(SESSION_KEY, None)
    if s is None:
        return
    if _is_worker(config):
        config.workeroutput.update(s.worker_output())
        return
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        if _runs_benchmarks(config):  # `pytest tests -x` stopping early is no interrupted leaderboard run
            s.write_partial()
        return
    if not s.rows and not s.speed and not s.failed_tasks:
        return
    s.finish()
    if s.regressions:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    s = config.stash.get(SESSION_KEY, None)
    if s is None or _is_worker(config):
        return
    tr = terminalreporter
    for line in s.notes():
        tr.write_line(line)
    if not s.doc:
        return
    tr.write_sep("=", "ablation-method leaderboard")
    for line in leaderboard_lines(s.doc, s.speed):
        tr.write_line(line)
    tr.write_line("wrote " + ", ".join(str(p) for p in s.written))
    for line in s.ranks:
        tr.write_line(line)
    if config.getoption("--compare"):
        regs = s.regressions
        tr.write_sep("=", f"regressions against {config.getoption('--compare')}: {len(regs)}")
        tr.write_line(f"tolerance {s.options.tolerance}; {describe_noise(s.baseline)}")
        tr.write_line(format_regressions(regs) if regs else "none: every row and method summary within tolerance")
        if regs:  # counted in pytest's last line too ("11 regressions, 153 passed"), so it cannot read as a clean pass
            # report-like entries (other plugins read every stats entry's attributes)
            tr.stats.setdefault("regressions", []).extend(SimpleNamespace(nodeid="", when="call", regression=r) for r in regs)
