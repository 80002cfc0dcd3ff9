"""The linter (ruff, configured in pyproject.toml: pyflakes and pycodestyle's error classes) passes on the suite's own code.

Only the project's folders and top-level files are linted: a user's method file saved in the repo root (as the
README's example suggests) is theirs, not the suite's.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the suite's code: its packages, tests, benchmarks, scripts, examples and root conftest
SUITE = ("interventions", "tasks", "siit_training", "ablations", "abench", "tests", "benchmarks", "scripts", "examples", "conftest.py")


def test_ruff_passes():
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", *SUITE], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_readme_method_example_is_lint_clean(tmp_path):
    """The README's plugin example, saved as the user would save it, passes the same linter."""
    import re

    code = re.search(r"<!-- plugin-example -->\s*```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    (tmp_path / "my_method.py").write_text(code)
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", "--config", str(ROOT / "pyproject.toml"),
                          str(tmp_path / "my_method.py")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
