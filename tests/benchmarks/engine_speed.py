# SPDX-License-Identifier: Apache-2.0
"""Step time of prior training through the engine (Lightning) against a plain PyTorch loop doing the same work.

The plain loop is what ``train_prior`` ran before the engine: per batch, the negative ELBO (KL warm-up and
scheduled sampling as arguments), backward, gradient clipping, the finite check, one Adam step; the engine adds
Lightning's loop, hooks and the data module. Both run ``--epochs`` epochs on the same data, one thread; the
first epoch (warm-up) is left out and the median epoch time is compared. ::

    OMP_NUM_THREADS=1 python tests/benchmarks/engine_speed.py --model rvae --audio    # 513-bin spectra, batch 64
    OMP_NUM_THREADS=1 python tests/benchmarks/engine_speed.py --model srnn           # trajectories, batch 256
"""

import argparse
import statistics
import time

import torch

from pyro_dvae import priors
from pyro_dvae.training import TrainConfig, elbo_loss, train_prior


def data(audio, n, seed):
    g = torch.Generator().manual_seed(seed)
    if audio:
        return torch.rand(n, 50, 513, generator=g) ** 4 * 10 + 1e-4
    from pyro_dvae.data import synthetic_trajectories

    return torch.as_tensor(synthetic_trajectories(n, 60, seed=seed))


def build(model, audio):
    torch.manual_seed(0)
    if audio:
        return priors.build(model, x_dim=513, z_dim=16, emission="spectral", dense_dim=256, rnn_dim=128,
                            z_dense=[64, 32])
    return priors.build(model, x_dim=4, z_dim=4, dense_dim=32, rnn_dim=32, z_dense=[32], residual=True)


def plain_loop(prior, train, cfg):
    prior.fit_normalisation(train)
    opt = torch.optim.Adam(prior.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(0)
    times = []
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        prior.train()
        for idx in torch.randperm(len(train), generator=gen).split(cfg.batch_size):
            loss = elbo_loss(prior, train[idx], None, cfg.kl_scale(epoch), cfg.ss_prob(epoch))
            opt.zero_grad()
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(prior.parameters(), cfg.clip_norm)
            if torch.isfinite(loss) and torch.isfinite(norm):
                opt.step()
        times.append(time.perf_counter() - t0)
    return times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="rvae")
    p.add_argument("--audio", action="store_true", help="513-bin power spectra (else box trajectories)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--n", type=int, default=None, help="training sequences (default 512 audio, 4096 trajectories)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    n = args.n or (512 if args.audio else 4096)
    train, val = data(args.audio, n, 0), data(args.audio, 8, 1)
    batch = 64 if args.audio else 256
    cfg = TrainConfig(epochs=args.epochs, batch_size=batch, patience=100)
    plain = plain_loop(build(args.model, args.audio), train, cfg)
    res = train_prior(build(args.model, args.audio), train, val, cfg)
    engine = [row["seconds"] for row in res.history]
    steps = -(-n // batch)
    a, b = statistics.median(plain[1:]), statistics.median(engine[1:])
    print(f"{args.model} ({'audio' if args.audio else 'trajectories'}, {n} sequences, batch {batch}, {steps} steps "
          f"per epoch): plain loop {1000 * a / steps:.1f} ms / step, engine {1000 * b / steps:.1f} ms / step "
          f"(validation included), ratio {b / a:.3f}")


if __name__ == "__main__":
    main()
