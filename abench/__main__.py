"""``python -m abench merge shard*/leaderboard.json --report-dir DIR`` (see ``abench.merge``)."""

import sys

COMMANDS = {"merge": "abench.merge"}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m abench {{{','.join(COMMANDS)}}} ...", file=sys.stderr)
        return 2
    import importlib

    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
