"""The README and docs/ stay true: links resolve, shown commands still parse, generated parts match their sources.

A command block is a fenced ```bash block preceded by a ``<!-- cmd -->`` line. Running every such
command would take the full benchmark, so each is checked for what can go stale cheaply: the
program it names exists, and every ``--option`` it passes appears in that program's ``--help``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
CMD_BLOCK = re.compile(r"<!-- cmd -->\s*```bash\n(.*?)```", re.S)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", page.read_text(), re.M)}


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code is not a link
    return [a or b for a, b in LINK.findall(text)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    bad = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading with that anchor")
    assert not bad, bad


def test_every_docs_page_is_linked_from_the_readme_and_says_what_it_is_for():
    readme_links = {Path(t.partition("#")[0]).name for t in links(ROOT / "README.md")}
    for page in PAGES[1:]:
        assert page.name in readme_links, f"README does not link {page.name}"
        lines = [line for line in page.read_text().splitlines() if line.strip()]
        assert lines[0].startswith("# ") and not lines[1].startswith(("#", "|", "```", "<!--")), \
            f"{page.name}: a title, then one line saying what the page is for"


def commands() -> list[tuple[str, str]]:
    """(page, command) for every line of every command block, comments and continuation-free."""
    out = []
    for page in PAGES:
        for block in CMD_BLOCK.findall(page.read_text()):
            for line in block.splitlines():
                cmd = line.split(" #")[0].strip()
                for part in cmd.split("&&"):
                    if part.strip():
                        out.append((page.name, part.strip()))
    return out


def program(argv: list[str]) -> tuple[str, ...]:
    """The part of a command that names the program whose ``--help`` lists its options."""
    if argv[0] == "pytest":
        return ("pytest",)
    if argv[:2] == ["python", "-m"]:
        return ("python", "-m", argv[2])
    if argv[0] == "python":
        return ("python", argv[1])
    raise AssertionError(f"no rule to check {' '.join(argv)!r}; add one to tests/test_docs.py")


@lru_cache(maxsize=None)
def help_text(prog: tuple[str, ...]) -> str:
    if prog == ("pytest",):
        argv = [sys.executable, "-m", "pytest", "benchmarks", "-p", "no:cacheprovider", "--help"]
    elif prog[:2] == ("python", "-m"):
        argv = [sys.executable, "-m", prog[2], "--help"]
    else:
        argv = [sys.executable, prog[1], "--help"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, f"{' '.join(prog)} --help failed:\n{res.stderr[-2000:]}"
    return res.stdout


CASES = [c for c in commands() if not c[1].startswith("pip ")]


def test_there_are_commands_to_check():
    assert len(CASES) >= 10


@pytest.mark.parametrize("page,cmd", CASES, ids=[f"{p}:{c[:60]}" for p, c in CASES])
def test_shown_command_parses(page, cmd):
    argv = shlex.split(cmd)
    prog = program(argv)
    if prog[0] == "python" and prog[1] != "-m":
        assert (ROOT / prog[1]).is_file(), f"{page}: {prog[1]} does not exist"
    for arg in argv:
        if arg.startswith(("examples/", "scripts/", "benchmarks/")) and not arg.endswith("/"):
            assert (ROOT / arg.split("::")[0]).exists(), f"{page}: {arg} does not exist"
    options = {a.split("=")[0] for a in argv if a.startswith("--")}
    if not options and prog[0] == "python" and prog[1] != "-m":
        return  # a script called with positional arguments only: its file exists
    text = help_text(prog)
    missing = [o for o in sorted(options) if not re.search(re.escape(o) + r"\b", text)]
    assert not missing, f"{page}: {cmd!r} passes options its --help does not list: {missing}"


def headline_sources() -> list:
    """The leaderboards the README headline may come from: the committed one (git's HEAD) and the working
    tree's. README command 1 (`pytest benchmarks`) rewrites the working tree's with this machine's run, and
    command 2 must still pass: the README says what was committed, not what the user's run measured."""
    import json

    from abench import readme
    from abench.document import Leaderboard

    docs = [Leaderboard.from_json(json.loads(readme.LEADERBOARD.read_text()))]
    committed = subprocess.run(["git", "show", f"HEAD:{readme.LEADERBOARD.relative_to(ROOT).as_posix()}"], cwd=ROOT,
                               capture_output=True, text=True)
    if committed.returncode == 0:  # not a git checkout (an sdist): the working tree's only
        docs.append(Leaderboard.from_json(json.loads(committed.stdout)))
    return docs


def test_readme_headline_matches_the_committed_leaderboard():
    """Regenerate the block and the figure from the committed (or the working tree's) reports/leaderboard.json
    and compare; on a mismatch run ``python -m abench.readme``."""
    from abench import readme

    text = readme.README.read_text()
    svg = readme.FIGURE.read_text()
    assert any(readme.replace_block(text, readme.headline_markdown(doc)) == text and svg == readme.figure_svg(doc)
               for doc in headline_sources()), "run: python -m abench.readme"


def test_headline_table_rows_are_the_summary_numbers():
    """An independent read of the table: each row's pooled AUROC and faithfulness equal the summary's."""
    from abench.readme import headline_entries

    docs = headline_sources()
    text = (ROOT / "README.md").read_text()
    doc = next((d for d in docs if f"{d.environment.get('created_at')}" in text), docs[0])
    rows = re.findall(r"^\| `([^`]+)` \| ([\d.]+|-) \| [^|]+ \| ([\d.]+|-) \|", (ROOT / "README.md").read_text(), re.M)
    entries = headline_entries(doc)
    assert [r[0] for r in rows] == [e.method for e in entries]
    for (method, auroc, faith), e in zip(rows, entries):
        assert auroc == f"{e.pooled_auroc:.3f}" and faith == f"{e.get('mean_faithfulness'):.3f}", method


def test_siit_models_table_matches_the_cards():
    """docs/siit-models.md's table is the one the cards give today; on a mismatch run
    ``python scripts/siit_models_table.py --write docs/siit-models.md``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("siit_models_table", ROOT / "scripts" / "siit_models_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    page = ROOT / "docs" / "siit-models.md"
    text = page.read_text()
    folders = mod.default_folders()  # the shipped models' cards and those that missed the bar
    block = mod.table_markdown(mod.rows(folders), mod.recipes(folders))
    assert mod.replace_block(text, block) == text, "run: python scripts/siit_models_table.py --write docs/siit-models.md"


def test_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 210
