# SPDX-License-Identifier: Apache-2.0
"""What several test modules share (importable as ``common``: pytest puts ``tests/`` on the path with its
``conftest.py``).

:data:`REALDATA` is the shared real-data folder: ``$PYRO_DVAE_REALDATA`` when set, else ``../shared/realdata``
beside the repository. :func:`requires_realdata` marks a test that reads it (marker ``realdata``) and skips it,
naming the folder and the variable, when what it reads is absent.
"""

import os
from pathlib import Path

import pytest

#: the repository root
REPO = Path(__file__).resolve().parents[1]
#: the environment variable that points the tests at the real-data folder
REALDATA_ENV = "PYRO_DVAE_REALDATA"
#: the real-data folder (MOTChallenge sequences, speech, music, noise)
REALDATA = Path(os.environ.get(REALDATA_ENV, REPO.parent / "shared" / "realdata"))


def requires_realdata(*subpaths):
    """A decorator: the ``realdata`` marker, and a skip unless ``REALDATA / p`` exists for every ``p`` in
    ``subpaths`` (the folder itself when none is given); the reason names the missing paths and
    ``PYRO_DVAE_REALDATA``."""
    missing = [str(REALDATA / p) for p in subpaths or (".",) if not (REALDATA / p).exists()]
    reason = (f"real data absent: {', '.join(missing)} (set {REALDATA_ENV} to the shared realdata folder, "
              f"default {REPO.parent / 'shared' / 'realdata'})")
    skip = pytest.mark.skipif(bool(missing), reason=reason)

    def mark(test):
        return pytest.mark.realdata(skip(test))

    return mark


#: TUD-Stadtmitte's ground truth as shipped inside the motmetrics wheel (179 frames, 640 x 480, 25 fps)
MOTMETRICS_TUD = Path(__import__("motmetrics").__file__).parent / "data" / "TUD-Stadtmitte" / "gt.txt"


def tud_gt(frames=None):
    """The rows of :data:`MOTMETRICS_TUD` (of its first ``frames`` frames when given)."""
    import numpy as np

    gt = np.loadtxt(MOTMETRICS_TUD, delimiter=",")
    return gt if frames is None else gt[gt[:, 0] <= frames]


def jittered_detections(gt, rng, scores, noise=0.03, miss=0.1):
    """Detection rows ``frame, -1, x, y, w, h, score`` made from ``gt``: each box dropped with probability ``miss``,
    the others moved by ``noise`` times their size (Gaussian) and scored uniformly in ``scores = (low, high)``."""
    import numpy as np

    keep = rng.random(len(gt)) > miss
    boxes = gt[keep, 2:6] + noise * gt[keep][:, [4, 5, 4, 5]] * rng.normal(size=(keep.sum(), 4))
    return np.column_stack([gt[keep, 0], -np.ones(keep.sum()), boxes, rng.uniform(*scores, keep.sum())])


def write_tud(root, gt, det, length, det_fmt="%g"):
    """A MOTChallenge folder ``root/TUD`` (gt, ``det/det.txt``, seqinfo.ini: 640 x 480, 25 fps, ``length`` frames)
    of the rows ``gt`` and ``det``; returns ``root``."""
    import numpy as np

    seq = Path(root) / "TUD"
    (seq / "gt").mkdir(parents=True)
    (seq / "det").mkdir()
    np.savetxt(seq / "gt" / "gt.txt", gt[:, :6], fmt="%g", delimiter=",")
    np.savetxt(seq / "det" / "det.txt", det, fmt=det_fmt, delimiter=",")
    (seq / "seqinfo.ini").write_text(f"[Sequence]\nname=TUD\nimDir=img1\nframeRate=25\nseqLength={length}\n"
                                     "imWidth=640\nimHeight=480\nimExt=.jpg\n")
    return Path(root)
