"""`hami-mig` command line: one module per subcommand, each with `register(subparsers)`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from hami_mig import __version__
from hami_mig.cli.common import EXIT_BAD_INPUT, EXIT_FAILURE, CliError

# Subcommand modules under hami_mig.cli; each defines register(subparsers) that sets `func`.
COMMANDS: tuple[str, ...] = ("plan", "explain", "devices", "apply", "device-plugin", "demo", "scheduler", "doctor")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hami-mig",
        description="Dynamic MIG GPU sharing for Kubernetes (HAMi-compatible node agent).",
    )
    parser.add_argument("--version", action="version", version=f"hami-mig {__version__}")
    parser.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"], help="log verbosity"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"hami_mig.cli.{name.replace('-', '_')}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"hami-mig {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except (OSError, ValueError) as exc:  # last line of defence: one line, never a traceback
        print(f"hami-mig {args.command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # a bug or an unexpected library error: one line, the traceback at debug level
        logging.getLogger("hami_mig").debug("unexpected error", exc_info=True)
        print(f"hami-mig {args.command}: unexpected {type(exc).__name__}: {exc} (run with --log-level debug "
              "for the traceback)", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
