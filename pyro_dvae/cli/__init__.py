# SPDX-License-Identifier: Apache-2.0
"""The pyro-dvae command line: one module per command (``add_parser`` and ``run``); the options every command
shares, the range-checked option types, the output-path checks and strict JSON live in :mod:`.common`.

:func:`main` owns what every command shares at run time: the output checks, ``--threads`` (applied once around the
command's ``run``, which reports ``args.threads``), one-line warnings and errors, and ``--out-json``."""

import sys
import warnings

from ..engine.cpu import threads
from ..engine.ranks import is_rank_zero
from . import enhance, eval_prior, separate, track, track_mot, train_noise, train_prior
from .common import Formatter, Parser, check_out_dir, check_out_path, common_options, write_json

COMMANDS = (train_prior, eval_prior, train_noise, track, track_mot, separate, enhance)
DESCRIPTION = "Deep dynamical generative models (DVAE priors) on Pyro, and the MixDVAE tasks built on them."
EPILOG = 'Run "pyro-dvae COMMAND --help" for the options of a command, their defaults and an example.'


def build_parser():
    from .. import __version__

    parser = Parser(prog="pyro-dvae", description=DESCRIPTION, epilog=EPILOG,
                    formatter_class=Formatter)
    parser.add_argument("--version", action="version", version=f"pyro-dvae {__version__}")
    sub = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub, [common_options()])
    return parser


def check_outputs(args):
    """Check every output path before any work (missing folders are created when written): ``--out-json``
    and the paths each command declares in ``args.outputs`` as ``(attribute, option, kind)``, with ``kind``
    ``"dir"``, a tuple of file suffixes, or ``None`` for any file."""
    outputs = [*args.outputs, ("out_json", "--out-json", None)]
    for attr, option, kind in outputs:
        value = getattr(args, attr, None)
        if value is None:
            continue
        if kind == "dir":
            check_out_dir(value, option)
        else:
            check_out_path(value, option, kind)
    files = [(getattr(args, a), o) for a, o, k in outputs if k != "dir" and getattr(args, a, None) is not None]
    for i, (path, option) in enumerate(files):
        for other, other_option in files[:i]:
            if path == other:
                raise ValueError(f"{option} and {other_option} name the same file: {path}")


def main(argv=None):
    """Run one command; 0 on success, 2 with a one-line message on a bad input (argparse's own errors too)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse has printed the usage and "argument --x: ..." (or the help)
        return e.code
    prefix = f"pyro-dvae {args.command}"

    def one_line(message, category, filename, lineno, line=None):
        return f"{prefix}: warning: {message}\n"

    previous_format = warnings.formatwarning  # catch_warnings does not restore it
    try:
        with warnings.catch_warnings():
            warnings.formatwarning = one_line
            check_outputs(args)
            with threads(args.threads):  # the one place the commands set torch's threads; summaries report args.threads
                summary = args.run(args)
            if args.out_json and is_rank_zero():  # the other ranks of a launched training write nothing
                write_json(args.out_json, summary)
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"{prefix}: error: {e}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = previous_format
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
