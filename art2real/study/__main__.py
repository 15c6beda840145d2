"""``python -m art2real.study build|serve|export|import|simulate|table`` (the same as ``art2real study ...``)."""
import argparse
import logging
import sys

from .cli import add_actions


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m art2real.study", description=__doc__)
    add_actions(parser.add_subparsers(dest="study_command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, FileExistsError, KeyError, ValueError, RuntimeError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
