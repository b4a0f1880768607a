"""`python -m fer_core {info,train,evaluate,predict,video,finalize,interpolate,export,download}`."""

from __future__ import annotations

import argparse
import sys

from fer_core.cli import dataset, evaluate, predict, train
from fer_core.errors import FerError

DESCRIPTION = "Facial emotion recognition on FER2013: datasets, training, evaluation, prediction"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fer_core", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (dataset, train, evaluate, predict):
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except FerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
