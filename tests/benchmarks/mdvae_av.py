# SPDX-License-Identifier: Apache-2.0
"""MDVAE on the semi-synthetic audiovisual set (real speech, rendered faces: :mod:`pyro_dvae.data.audiovisual`):
what each latent captures, audiovisual denoising, speaker identification from ``w``.

Trains (on training speakers of :func:`pyro_dvae.data.heldout.speech_split`, ``--train-speakers`` of them)
MDVAE with ``pyro-dvae train-prior --model mdvae`` and two unimodal baselines of the zoo with a static latent,
DSAE on the visual frames and DSAE on the audio power spectra (``pyro_dvae.training.train_prior``, the same
chunks), then on the *test* speakers (never seen):

- **swaps**: for pairs of test chunks (A, B) of different speakers, A's latents with ``w``, ``z_av`` or ``z_v``
  taken from B, decoded; the factors read back from the frames (:func:`~pyro_dvae.data.audiovisual.measure`:
  appearance = face width, height and shade; mouth = dark mouth pixels; head = face centre) and, per factor,
  the share of the way from A's reconstruction to B's that the swap moved it:
  ``sum |F(swap) - F(A')| / sum |F(B') - F(A')|`` (1: the factor follows the swapped latent; 0: it stays A's);
  mouth and head also split into their motion within the chunk and the chunk's mean; the same pairs swapped by
  the generator itself (``swaps_generator``) show what the measurement reads when exactly one factor moves;
- **denoising**: the mouth region of the visual frames replaced by noise; MDVAE (clean audio + corrupted
  frames) and the visual DSAE reconstruct the frames; mean squared error against the clean frames inside the
  corrupted box and outside it, and the mouth-opening error;
- **speaker identification**: a linear (softmax) classifier on ``w`` (MDVAE) or ``v`` (the DSAEs) trained on
  ``--labels`` chunks per test speaker and scored on the speaker's other chunks.

::

    OMP_NUM_THREADS=1 python tests/benchmarks/mdvae_av.py --work mdvae_av --figure
"""

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))

from pyro_dvae import priors  # noqa: E402
from pyro_dvae.data import audiovisual as AV  # noqa: E402
from pyro_dvae.data import heldout  # noqa: E402
from pyro_dvae.data.audio import load_audio  # noqa: E402

XA = 513


def run(cmd, log):
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: see {log}")


def prepare(work, realdata, n_train):
    split = heldout.speech_split(os.path.join(realdata, "speech", "librispeech", "train-clean-100"))
    by_speaker = {}
    for f in split["train"]:
        by_speaker.setdefault(AV.speaker_of(f), []).append(f)
    keep = [f for s in sorted(by_speaker)[:n_train] for f in by_speaker[s]]
    heldout.link_files(keep, os.path.join(work, "train"))
    return split


def train_all(work, args):
    from pyro_dvae.engine import ChunkStore
    from pyro_dvae.training import TrainConfig, train_prior

    store_dir = os.path.join(work, "av_store")
    store = ChunkStore.build(os.path.join(work, "train"), store_dir, seq_len=args.seq_len, kind="audiovisual")
    jobs = []
    if not os.path.exists(os.path.join(work, "mdvae.pt.json")):
        cmd = ["pyro-dvae", "train-prior", "--model", "mdvae", "--data", os.path.join(work, "train"), "--out",
               os.path.join(work, "mdvae.pt"), "--epochs", str(args.epochs), "--dense-dim", "128", "--rnn-dim", "64",
               "--seq-len", str(args.seq_len), "--batch-size", str(args.batch_size),
               "--chunk-cache", store_dir, "--quiet", "--out-json", os.path.join(work, "mdvae.pt.json"),
               *args.mdvae_args]
        jobs.append(lambda: run(cmd, os.path.join(work, "mdvae.log")))

    def dsae(part):
        out = os.path.join(work, f"dsae_{part}.pt")
        if os.path.exists(out + ".json"):
            return
        torch.set_num_threads(1)
        x = store.tensor()
        x = x[..., :XA] if part == "audio" else x[..., XA:]
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        n_val = max(1, round(0.1 * len(x)))
        emission = "spectral" if part == "audio" else "gaussian"
        torch.manual_seed(0)
        prior = priors.build("dsae", x_dim=x.shape[-1], z_dim=16, emission=emission, dense_dim=128, rnn_dim=64,
                             z_dense=[64, 32], v_dim=84)
        res = train_prior(prior, x[perm[n_val:]], x[perm[:n_val]], TrainConfig(epochs=args.epochs,
                                                                             batch_size=args.batch_size),
                          out=out)
        with open(out + ".json", "w") as f:
            json.dump({"best_val_loss": res.best_val, "best_epoch": res.best_epoch,
                       "seconds_per_epoch": float(np.median([h["seconds"] for h in res.history]))}, f)

    jobs += [lambda: dsae("visual"), lambda: dsae("audio")]
    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(lambda j: j(), jobs))


class TwoStage:
    """The reference's two-stage design: frame-wise VAEs of the zoo (``vae``) per modality, MDVAE on their
    posterior-mean features (Gaussian emissions); frames decoded back through the frame VAEs."""

    def __init__(self, vae_a, vae_v, mdvae):
        self.vae_a, self.vae_v, self.mdvae = vae_a, vae_v, mdvae

    @torch.no_grad()
    def features(self, x):
        return torch.cat([self.vae_a.encode(x[..., :XA]).mean, self.vae_v.encode(x[..., XA:]).mean], -1)

    def encode(self, x):
        return self.mdvae.encode(self.features(x))

    @torch.no_grad()
    def decode(self, lat):
        fa, fv = self.mdvae.decode(lat)
        return self.vae_a.decode(fa)[0], self.vae_v.decode(fv)[0]


def train_two_stage(work, store, epochs):
    from pyro_dvae.training import TrainConfig, train_prior

    x = store.tensor()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    n_val = max(1, round(0.1 * len(x)))
    tr, va = perm[n_val:], perm[:n_val]
    frame = {}
    for part, sl, emission in (("audio", slice(0, XA), "spectral"), ("visual", slice(XA, None), "gaussian")):
        out = os.path.join(work, f"frame_vae_{part}.pt")
        if not os.path.exists(out):
            torch.manual_seed(0)
            vae = priors.build("vae", x_dim=x[..., sl].shape[-1], z_dim=32, emission=emission, dense_dim=256,
                               rnn_dim=8, z_dense=[128])
            train_prior(vae, x[tr][..., sl], x[va][..., sl], TrainConfig(epochs=epochs, batch_size=64), out=out)
        frame[part] = priors.load(out).eval()
    out = os.path.join(work, "mdvae_two_stage.pt")
    if not os.path.exists(out):
        feats = TwoStage(frame["audio"], frame["visual"], None).features(x)
        torch.manual_seed(0)
        m = priors.build("mdvae", x_a_dim=32, x_v_dim=32, audio_emission="gaussian", dense_dim=128, rnn_dim=64)
        train_prior(m, feats[tr], feats[va], TrainConfig(epochs=epochs, batch_size=64), out=out)
    return TwoStage(frame["audio"], frame["visual"], priors.load(out).eval())


def test_chunks(split, n_speakers, seq_len=30, part="test"):
    """``(x (N, T, 513 + PIXELS), factors list, speaker ids)`` of one utterance per speaker of ``part``."""
    first = {}
    for f in split[part]:
        first.setdefault(AV.speaker_of(f), f)
    xs, facts, spk = [], [], []
    for s in sorted(first)[:n_speakers]:
        av, fa = AV.chunks(load_audio(first[s]), s, os.path.basename(first[s]), seq_len)
        xs.append(av)
        facts += fa
        spk += [s] * len(av)
    return torch.from_numpy(np.concatenate(xs)), facts, np.array(spk)


FACTORS = {"appearance": ("width", "height", "shade"), "mouth": ("mouth",), "head": ("x", "y")}
#: The dynamic factors split into their motion within the chunk (``~``: minus the chunk's mean) and that mean
#: (``_``): a chunk's mean head position or mouth opening is constant over the chunk, hence static for any model
#: of one chunk, and a static latent may rightly take it.
SPLIT = {"mouth motion": ("mouth~",), "mouth mean": ("mouth_",), "head motion": ("x~", "y~"),
         "head mean": ("x_", "y_")}


def split_factors(m):
    """Add to the measured factors ``m`` (arrays ``(N, T)``) the motion (``k~``) and chunk mean (``k_``) of the
    dynamic ones."""
    for k in ("mouth", "x", "y"):
        mean = m[k].mean(-1, keepdims=True)
        m[k + "~"], m[k + "_"] = m[k] - mean, np.broadcast_to(mean, m[k].shape)
    return m


def swap_pairs(spk, pairs, seed=0):
    """``pairs`` index pairs (A, B) of chunks of different speakers."""
    rng = np.random.default_rng(seed)
    idx = []
    while len(idx) < pairs:
        a, b = rng.integers(len(spk), size=2)
        if spk[a] != spk[b]:
            idx.append((a, b))
    return idx


def moved(ms, ma, mb):
    """Per factor, the share of the way from A's measured factors ``ma`` to B's ``mb`` that ``ms`` moved."""
    row = {}
    for factor, keys in {**FACTORS, **SPLIT}.items():
        num = sum(np.abs(ms[k] - ma[k]).sum() / max(np.abs(mb[k] - ma[k]).std(), 1e-9) for k in keys)
        den = sum(np.abs(mb[k] - ma[k]).sum() / max(np.abs(mb[k] - ma[k]).std(), 1e-9) for k in keys)
        row[factor] = float(num / den) if den > 1e-9 else None  # None: A and B decode alike on it
    return row


def swaps(model, x, spk, pairs, seed=0):
    idx = swap_pairs(spk, pairs, seed)
    A, B = x[[a for a, _ in idx]], x[[b for _, b in idx]]
    la, lb = model.encode(A), model.encode(B)
    meas = lambda lat: split_factors(AV.measure(model.decode(lat)[1].clamp(0, 1).numpy()))  # noqa: E731
    ma, mb = meas(la), meas(lb)
    table = {latent: moved(meas({**la, latent: lb[latent]}), ma, mb) for latent in ("w", "z_av", "z_v")}
    return table, (A, B, la, lb)


def generator_swaps(facts, spk, pairs, seed=0):
    """The same pairs swapped by the generator itself (A's factors with B's appearance, mouth track, or head walk
    and blinks), rendered and measured like the model's swaps: what the measurement reads when exactly one
    factor moves (its cross-talk, e.g. a larger face reads as a slightly different mouth opening)."""
    idx = swap_pairs(spk, pairs, seed)
    keys = ("appearance", "mouth", "head", "blink")
    meas = lambda fs: split_factors(AV.measure(np.stack([AV.render(*(f[k] for k in keys)) for f in fs])))  # noqa: E731
    ma, mb = meas([facts[a] for a, _ in idx]), meas([facts[b] for _, b in idx])
    swapped = {"appearance": ("appearance",), "mouth": ("mouth",), "head and blinks": ("head", "blink")}
    return {name: moved(meas([{**facts[a], **{k: facts[b][k] for k in ks}} for a, b in idx]), ma, mb)
            for name, ks in swapped.items()}


def mouth_box(fact):
    """A box (rows, cols) around the mouth of every frame of a chunk, from the generator's factors."""
    width, height, _, size = fact["appearance"]
    a, b = size * width, size * height * 1.1
    boxes = []
    for hx, hy in fact["head"]:
        cy, cx = AV.SIZE / 2 + hy + 0.45 * b, AV.SIZE / 2 + hx
        r0, r1 = int(np.floor(cy - 5)), int(np.ceil(cy + 5))
        c0, c1 = int(np.floor(cx - 0.5 * a - 1)), int(np.ceil(cx + 0.5 * a + 1))
        boxes.append((max(r0, 0), min(r1, AV.SIZE), max(c0, 0), min(c1, AV.SIZE)))
    return boxes


def denoise(model, dsae_v, x, facts, seed=0):
    g = np.random.default_rng(seed)
    clean = x[..., XA:].numpy().reshape(len(x), x.shape[1], AV.SIZE, AV.SIZE)
    bad = clean.copy()
    box = np.zeros_like(clean, dtype=bool)
    for i, fact in enumerate(facts):
        for t, (r0, r1, c0, c1) in enumerate(mouth_box(fact)):
            box[i, t, r0:r1, c0:c1] = True
    bad[box] = g.uniform(0, 1, box.sum())
    xb = x.clone()
    xb[..., XA:] = torch.from_numpy(bad.reshape(len(x), x.shape[1], -1))
    rec = {"corrupted": bad,
           "mdvae": model.decode(model.encode(xb))[1].clamp(0, 1).numpy().reshape(clean.shape)}
    with torch.no_grad():
        v_in = xb[..., XA:]
        q, statics = dsae_v.encode(v_in, with_statics=True)
        z = q.noiseless() if hasattr(q, "noiseless") else q.mean
        rec["dsae-visual"] = dsae_v.decode(z, v_in)[0].clamp(0, 1).numpy().reshape(clean.shape)
    m_clean = AV.measure(clean.reshape(len(x), x.shape[1], -1))["mouth"]
    out = {}
    for name, r in rec.items():
        err = (r - clean) ** 2
        out[name] = {"mse_mouth_box": float(err[box].mean()), "mse_elsewhere": float(err[~box].mean()),
                     "mouth_error_px": float(np.abs(AV.measure(r.reshape(len(x), x.shape[1], -1))["mouth"]
                                                    - m_clean).mean())}
    return out, (clean, rec)


def speaker_id(features, spk, labels, seed=0):
    """Accuracy of a softmax classifier on ``features`` with ``labels`` training chunks per speaker."""
    rng = np.random.default_rng(seed)
    speakers = sorted(set(spk))
    train = np.zeros(len(spk), dtype=bool)
    for s in speakers:
        idx = np.where(spk == s)[0]
        train[rng.choice(idx, size=min(labels, len(idx) - 1), replace=False)] = True
    y = torch.tensor([speakers.index(s) for s in spk])
    f = torch.as_tensor(features, dtype=torch.float32)
    f = (f - f[train].mean(0)) / f[train].std(0).clamp_min(1e-6)
    lin = torch.nn.Linear(f.shape[1], len(speakers))
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=200)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(f[train]), y[train]) + 1e-3 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float((lin(f[~train]).argmax(1) == y[~train]).float().mean())


def static_of(prior, x):
    with torch.no_grad():
        return prior.encode(x, with_statics=True)[1]["v"]


def figure(path, swap_data, model, den):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    A, B, la, lb = swap_data
    rows = {"A (recon.)": la, "B (recon.)": lb, "A, w from B": {**la, "w": lb["w"]},
            "A, z_av from B": {**la, "z_av": lb["z_av"]}, "A, z_v from B": {**la, "z_v": lb["z_v"]}}
    clean, rec = den
    times = [0, 7, 14, 21, 29]
    fig, ax = plt.subplots(len(rows) + 4, len(times), figsize=(1.3 * len(times), 1.3 * (len(rows) + 4)))
    for r, (label, lat) in enumerate(rows.items()):
        frames = model.decode({k: v[:1] for k, v in lat.items()})[1][0].clamp(0, 1).numpy()
        for c, t in enumerate(times):
            ax[r, c].imshow(frames[t].reshape(AV.SIZE, AV.SIZE), cmap="gray", vmin=0, vmax=1)
        ax[r, 0].set_ylabel(label, fontsize=7)
    for r, (label, arr) in enumerate([("clean", clean), ("mouth corrupted", rec["corrupted"]),
                                      ("MDVAE", rec["mdvae"]), ("DSAE (visual)", rec["dsae-visual"])]):
        for c, t in enumerate(times):
            ax[len(rows) + r, c].imshow(arr[0, t], cmap="gray", vmin=0, vmax=1)
        ax[len(rows) + r, 0].set_ylabel(label, fontsize=7)
    for a in ax.flat:
        a.set_xticks([])
        a.set_yticks([])
    for c, t in enumerate(times):
        ax[0, c].set_title(f"frame {t}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", required=True)
    p.add_argument("--realdata", default=os.path.join(HERE, "..", "..", "..", "shared", "realdata"))
    p.add_argument("--train-speakers", type=int, default=100)
    p.add_argument("--test-speakers", type=int, default=50)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--pairs", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=30, help="frames per chunk (training and test)")
    p.add_argument("--batch-size", type=int, default=64, help="chunks per training step")
    p.add_argument("--labels", type=int, default=3, help="labelled chunks per test speaker (speaker id)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--figure", action="store_true")
    p.add_argument("--part", choices=["dev", "test"], default="test",
                   help="speakers to evaluate on (dev: for choices; test: the table)")
    p.add_argument("--mdvae-args", nargs="*", default=[], help="more train-prior options for MDVAE")
    p.add_argument("--two-stage", action="store_true",
                   help="also the two-stage design: frame-wise VAEs per modality, MDVAE on their features")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    os.makedirs(args.work, exist_ok=True)
    split = prepare(args.work, args.realdata, args.train_speakers)
    train_all(args.work, args)
    model = priors.load(os.path.join(args.work, "mdvae.pt")).eval()
    dsae_v = priors.load(os.path.join(args.work, "dsae_visual.pt")).eval()
    dsae_a = priors.load(os.path.join(args.work, "dsae_audio.pt")).eval()
    x, facts, spk = test_chunks(split, args.test_speakers, seq_len=args.seq_len, part=args.part)
    table, swap_data = swaps(model, x, spk, args.pairs)
    den, den_data = denoise(model, dsae_v, x[:64], facts[:64])
    extra = {}
    if args.two_stage:
        from pyro_dvae.engine import ChunkStore

        two = train_two_stage(args.work, ChunkStore(os.path.join(args.work, "av_store")), args.epochs)
        extra = {"swaps_two_stage": swaps(two, x, spk, args.pairs)[0],
                 "denoising_two_stage": denoise(two, dsae_v, x[:64], facts[:64])[0]["mdvae"],
                 "speaker_id_two_stage": speaker_id(two.encode(x)["w"].numpy(), spk, args.labels)}
    ids = {"mdvae (w)": speaker_id(model.encode(x)["w"].numpy(), spk, args.labels),
           "dsae visual (v)": speaker_id(static_of(dsae_v, x[..., XA:]).numpy(), spk, args.labels),
           "dsae audio (v)": speaker_id(static_of(dsae_a, x[..., :XA]).numpy(), spk, args.labels)}
    result = {"part": args.part, "chunks": len(x), "speakers": len(set(spk)), "swaps": table,
              "swaps_generator": generator_swaps(facts, spk, args.pairs), "denoising": den,
              "speaker_id": ids, "labels_per_speaker": args.labels, "chance": 1 / len(set(spk)), **extra,
              "training": {n: json.load(open(os.path.join(args.work, f"{n}.pt.json")))
                           for n in ("mdvae", "dsae_visual", "dsae_audio")}}
    print(json.dumps(result, indent=1))
    with open(os.path.join(args.work, f"result_{args.part}.json"), "w") as f:
        json.dump(result, f, indent=1)
    if args.figure:
        figure(os.path.join(args.work, f"figure_{args.part}.png"), swap_data, model, den_data)


if __name__ == "__main__":
    main()
