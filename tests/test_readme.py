"""The README's first two commands are what a new user runs; .ci/run must run the second."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return [line.split("#")[0].strip() for line in block.strip().splitlines()]


def test_readme_opens_with_install_and_test_commands():
    install, test = readme_commands()[:2]
    assert install.startswith('pip install -e ".[test]"') and "pytest benchmarks" in install
    assert test.startswith("pytest")


def test_ci_runs_the_readme_test_command():
    test = readme_commands()[1]
    ci = (ROOT / ".ci" / "run").read_text()
    for part in test.split("&&"):
        assert f"run {part.strip()} ||" in ci, part
