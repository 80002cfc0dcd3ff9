"""Command-line option types shared by the benchmark, the trainer and the scripts (the lowest package, so each may use them)."""

from __future__ import annotations

import argparse


def at_least(minimum: int):
    """An argparse type: an integer >= ``minimum``; anything else is a one-line usage error naming the value."""

    def count(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    return count
