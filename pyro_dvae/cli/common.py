# SPDX-License-Identifier: Apache-2.0
"""What every ``pyro-dvae`` command shares: help formatting, range-checked option types, the common options,
output paths checked before any work, and strict JSON."""

import argparse
import math
import os

from ..checkpoint import strict, write_json  # noqa: F401  (re-exported for the commands)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line naming the option, with a pointer to ``--help``."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks and appends ``(default: X)`` to every option that has a default."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("%(default)" in text or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS or not action.option_strings):
            return text
        default = " ".join(map(str, action.default)) if isinstance(action.default, list) else action.default
        return f"{text} (default: {default})".strip()


def int_at_least(low):
    """An argparse type: an integer ``>= low`` (argparse names the option in the error)."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
        return value

    return parse


def chunk_frames(text):
    """An argparse type for ``--chunk``: 0 (the whole input) or at least 2 frames."""
    value = int_at_least(0)(text)
    if value == 1:
        raise argparse.ArgumentTypeError("must be 0 (the whole file) or at least 2 frames, got 1")
    return value


def float_in(low=-math.inf, high=math.inf, low_open=False, high_open=False):
    """An argparse type: a finite float in the interval ``[low, high]`` (``(`` / ``)`` where open)."""
    text_range = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = math.isfinite(value) and (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high)
        if not ok:
            raise argparse.ArgumentTypeError(f"must be in {text_range}, got {text}")
        return value

    return parse


POSITIVE = float_in(0.0, low_open=True)
FRACTION = float_in(0.0, 1.0, low_open=True, high_open=True)


def common_options(out_json_help="write the run summary as JSON (strict: undefined values are null)"):
    """A parent parser with ``--seed``, ``--threads`` and ``--out-json``."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--threads", type=int_at_least(1), default=1,
                   help="torch CPU threads (1 is fastest for these model sizes on a busy machine)")
    p.add_argument("--out-json", metavar="PATH", help=out_json_help)
    return p


def add_command(sub, name, help, example, parents=()):
    """A sub-parser whose help ends with an example command."""
    return sub.add_parser(name, help=help, description=f"{help[0].upper()}{help[1:]}.",
                          epilog=f"example:\n  {example}", formatter_class=Formatter, parents=list(parents))


def _check_creatable(folder, option, path):
    """``folder`` exists as a writable folder or can be created (its nearest existing ancestor is one)."""
    folder = os.path.abspath(folder)
    probe = folder
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise ValueError(f"{option} {path}: cannot create the folder {folder} ({probe} is a file)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: {probe} is not writable")


def check_out_path(path, option, suffixes=None):
    """Fail before any work when the file ``path`` cannot be written: an unknown file type (with
    ``suffixes``), a folder, an unwritable place, or a missing folder that cannot be created (missing folders
    are created by :func:`make_parent` when the file is written)."""
    if os.path.isdir(path):
        raise ValueError(f"{option} {path}: is a folder, expected a file path")
    if suffixes and os.path.splitext(path)[1].lower() not in suffixes:
        raise ValueError(f"{option} {path}: expected a {' / '.join(suffixes)} file")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise ValueError(f"{option} {path}: not writable")
    _check_creatable(os.path.dirname(os.path.abspath(path)), option, path)


def check_out_dir(path, option):
    """Fail before any work when the output folder ``path`` cannot be created or written."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{option} {path}: exists and is not a folder")
    _check_creatable(path, option, path)


def make_parent(path):
    """Create the folder of the file ``path`` (and its parents) when missing."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
