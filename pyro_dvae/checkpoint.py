# SPDX-License-Identifier: Apache-2.0
"""Reading checkpoint files safely, and writing strict JSON atomically.

:func:`read_torch_file` is ``torch.load(weights_only=True)`` with errors that say what is wrong with the file
(never torch's advice to retry with ``weights_only=False``, which is unsafe for a file of unknown origin and
useless for a corrupt one); :func:`write_json` writes strict JSON through a temporary file."""

import json
import math
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


def strict(obj):
    """``obj`` with every non-finite float replaced by ``None`` and numpy / torch scalars made Python numbers,
    so that it serialises as strict JSON."""
    if isinstance(obj, dict):
        return {str(k): strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    if hasattr(obj, "tolist") and hasattr(obj, "ndim"):  # numpy / torch scalars and arrays
        obj = obj.tolist()
        if isinstance(obj, list):
            return strict(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path, obj):
    """Write ``obj`` as strict JSON (``NaN`` / ``inf`` become ``null``), through a temporary file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(strict(obj), f, indent=1, allow_nan=False)
    os.replace(tmp, path)
