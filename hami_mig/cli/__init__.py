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
COMMANDS: tuple[str, ...] = ("plan", "explain", "check-config", "devices", "apply", "device-plugin", "demo",
                             "scheduler", "doctor")


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


GLOBAL_OPTIONS = ("--log-level", "--version", "-h", "--help")


def _misplaced(argv: Sequence[str]) -> str | None:
    """Why argv is wrong before argparse's own words: an unknown option before the subcommand."""
    for token in argv:
        if token in COMMANDS:
            return None
        name = token.split("=", 1)[0]
        if token.startswith("-") and name not in GLOBAL_OPTIONS:
            return (f"unknown option {name}; only {', '.join(GLOBAL_OPTIONS[:2])} go before the subcommand, "
                    f"a subcommand's own options after it (hami-mig COMMAND --help lists them)")
    return None


def _unrecognized(command: str, extra: Sequence[str]) -> str:
    """One line naming the unknown flags; a global option put after the subcommand says where it goes."""
    flags = [t for t in extra if t.startswith("-")] or list(extra)
    misplaced = [f for f in flags if f.split("=", 1)[0] in GLOBAL_OPTIONS[:2]]
    if misplaced:
        return (f"{misplaced[0].split('=', 1)[0]} is a global option: put it before the subcommand, e.g. "
                f"hami-mig {' '.join(extra)} {command} ...")
    return (f"unknown option{'s' if len(flags) > 1 else ''} {' '.join(flags)} (hami-mig {command} --help lists "
            "the options; global options such as --log-level go before the subcommand)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    problem = _misplaced(argv)
    if problem is not None:
        parser.error(problem)
    args, extra = parser.parse_known_args(argv)
    if extra:
        print(f"usage: hami-mig {args.command} [options] (see hami-mig {args.command} --help)", file=sys.stderr)
        print(f"hami-mig {args.command}: error: {_unrecognized(args.command, extra)}", file=sys.stderr)
        return EXIT_BAD_INPUT
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
    except OSError as exc:  # last line of defence, one line: the machine (a file, a socket, a device)
        print(f"hami-mig {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except ValueError as exc:  # InputError included: bad input named by the layer that found it
        print(f"hami-mig {args.command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # a bug or an unexpected library error: one line, the traceback at debug level
        logging.getLogger("hami_mig").debug("unexpected error", exc_info=True)
        print(f"hami-mig {args.command}: unexpected {type(exc).__name__}: {exc} (run with --log-level debug "
              "for the traceback)", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
