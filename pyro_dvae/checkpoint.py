# SPDX-License-Identifier: Apache-2.0
"""Reading checkpoint files safely: ``torch.load(weights_only=True)`` with errors that say what is wrong with
the file (never torch's advice to retry with ``weights_only=False``, which is unsafe for a file of unknown
origin and useless for a corrupt one)."""

import os
import pickle

import torch


def read_torch_file(path, what, option=None):
    """The object saved in ``path`` by ``torch.save``, loaded with ``weights_only=True`` on the CPU.

    :param str path: the file.
    :param str what: what the file should be, for messages (e.g. ``"pyro_dvae prior checkpoint"``).
    :param str option: the command-line option that named the file, for messages.
    :raises FileNotFoundError: no such file.
    :raises ValueError: an empty, truncated or corrupt file, not a torch file, or one holding Python objects
        that are not loaded for safety.
    """
    name = f"{option} {path}" if option else str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{name}: no such file" + (" (it is a folder)" if os.path.isdir(path) else ""))
    if os.path.getsize(path) == 0:
        raise ValueError(f"{name}: not a valid {what} (the file is empty)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for corrupt input (RuntimeError, EOFError, KeyError, ...)
        if isinstance(e, pickle.UnpicklingError) and "Unsupported global" in str(e):
            reason = "it holds Python objects other than tensors and plain containers, which are not loaded for safety"
        else:
            reason = "truncated, corrupt or not a torch file"
        raise ValueError(f"{name}: not a valid {what} ({reason})") from None
