"""``python -m tasks.train_siit ...``: the same command as ``python -m tasks.siit ...`` (kept because
the README and the shipped cards cite it)."""

from tasks.siit.__main__ import main

if __name__ == "__main__":
    main()
