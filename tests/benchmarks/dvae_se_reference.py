# SPDX-License-Identifier: Apache-2.0
"""Diagnostic: the reference frame VAE of the DVAE speech-enhancement paper, run through this project's pipeline.

``XiaoyuBIE1994/DVAE_SE`` ships trained frame VAEs (``trained_models/{wsj,vb}_vae/VAE_final_epoch*.pt``: 513-128-16,
tanh, the raw power of the peak-normalised waveform in, the log-variance out). This script loads such a state dict
into this project's :class:`~pyro_dvae.priors.VAE` (same layers; :class:`RawPowerVAE` only changes the network
input from standardised log-power to raw power) and scores analysis-resynthesis with
:func:`pyro_dvae.resynthesis.resynthesize_files` — the code ``pyro-dvae eval-prior`` runs — on the speakers of one
part of :func:`pyro_dvae.data.heldout.speech_split`. If the reference weights reach their level here, the front end,
the decoding and the resynthesis are right and any gap of the project's own priors is in their training.

The weights are GPL-3: they are a local diagnostic, never shipped or committed. Get them with
``git clone https://github.com/XiaoyuBIE1994/DVAE_SE`` and pass the file::

    python tests/benchmarks/dvae_se_reference.py --weights DVAE_SE/trained_models/wsj_vae/VAE_final_epoch297.pt \
        --part dev [--limit 10] [--out-json ref.json]
"""

import argparse
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))

from pyro_dvae.priors import VAE  # noqa: E402

#: the reference state-dict keys -> this project's VAE parameter names
KEYS = {"mlp_x_z.linear0": "enc.0", "inf_mean": "enc_head.loc", "inf_logvar": "enc_head.logvar",
        "mlp_z_x.linear0": "dec.0", "gen_logvar": "emit.logvar"}


class RawPowerVAE(VAE):
    """The project's frame VAE reading the raw power spectrum (the reference's input) instead of the
    standardised log-power."""

    def features(self, x):
        return x


def convert(state):
    """A :class:`RawPowerVAE` holding the reference VAE's weights ``state`` (a state dict)."""
    hidden = state["mlp_x_z.linear0.weight"].shape[0]
    z_dim = state["inf_mean.weight"].shape[0]
    x_dim = state["mlp_x_z.linear0.weight"].shape[1]
    prior = RawPowerVAE(x_dim, z_dim, emission="spectral", dense_dim=hidden, z_dense=())
    mapped = {}
    for old, new in KEYS.items():
        for kind in ("weight", "bias"):
            mapped[f"{new}.{kind}"] = state[f"{old}.{kind}"].float()
    missing = set(k for k in prior.state_dict() if not k.startswith(("x_loc", "x_scale", "out_scale")))
    if missing != set(mapped):
        raise ValueError(f"layer mismatch: project {sorted(missing)} vs reference {sorted(mapped)}")
    prior.load_state_dict(mapped, strict=False)
    return prior.eval()


def reference_forward(state, power):
    """The reference's own forward pass (posterior-mean ``z``): decoded variance for power ``(..., 513)``."""
    h = torch.tanh(power @ state["mlp_x_z.linear0.weight"].T + state["mlp_x_z.linear0.bias"])
    z = h @ state["inf_mean.weight"].T + state["inf_mean.bias"]
    g = torch.tanh(z @ state["mlp_z_x.linear0.weight"].T + state["mlp_z_x.linear0.bias"])
    return torch.exp(g @ state["gen_logvar.weight"].T + state["gen_logvar.bias"])


def main(argv=None):
    from pyro_dvae.data import heldout
    from pyro_dvae.resynthesis import mean_scores, resynthesize_files

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", required=True, help="a DVAE_SE VAE state dict (VAE_final_epoch*.pt)")
    p.add_argument("--realdata", default=os.path.join(HERE, "..", "..", "..", "shared", "realdata"))
    p.add_argument("--part", choices=("dev", "test"), default="dev")
    p.add_argument("--limit", type=int, help="first N files of the part")
    p.add_argument("--out-json")
    a = p.parse_args(argv)
    state = torch.load(a.weights, map_location="cpu", weights_only=True)
    prior = convert(state)
    files = heldout.speech_split(os.path.join(a.realdata, "speech", "librispeech", "train-clean-100"))[a.part]
    files = files[: a.limit] if a.limit else files
    rows, _ = resynthesize_files(prior, files, root=os.path.dirname(files[0]))
    mean = mean_scores(rows)
    sdr = [r["si_sdr"] for r in rows]
    print(f"{os.path.basename(a.weights)} via pyro_dvae, {a.part}, {len(rows)} files: SI-SDR {mean['si_sdr']:.2f} "
          f"(worst {min(sdr):.2f}), PESQ-wb {mean['pesq_wb']:.2f}, ESTOI {mean['estoi']:.2f}")
    if a.out_json:
        with open(a.out_json, "w") as f:
            json.dump({"weights": a.weights, "part": a.part, "mean": mean, "worst_si_sdr": float(np.min(sdr)),
                       "per_file": rows}, f, indent=1, allow_nan=False)


if __name__ == "__main__":
    main()
