"""Training one generation's VAE on its mix of real and freshly generated images.

The regime (collapse_hpc.regimes.mix) decides once per generation which slots of the training
set are real images (and which ones) and which come from the decoder of which earlier
generation. Generated slots hold no stored image: every batch decodes fresh prior samples
z ~ N(0, I) for them, as the notebook does. Slots are spread evenly through each epoch, so
every batch carries about the same share of each source (e.g. 10% real under replace:0.1).
"""
from __future__ import annotations

import logging
import math

import numpy as np
import torch
from tqdm import tqdm

from collapse_hpc.errors import UserError
from collapse_hpc.experiments.vae.model import ConvVAE, losses
from collapse_hpc.regimes import REAL, Regime, mix


def plan_slots(regime: Regime, n_real: int, n_generated: int, generations: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(source, index) of every training slot: source REAL real image `index`, g a sample of generation g."""
    size = n_real if generations == 0 else n_generated
    parts = mix(regime, n_real, [n_generated] * generations, rng, size=size)
    source = np.concatenate([np.full(len(idx), src, np.int64) for src, idx in parts])
    index = np.concatenate([np.asarray(idx, np.int64) for _, idx in parts])
    return source, index


def epoch_order(source: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation of the slots that spreads each source evenly over the epoch."""
    key = np.empty(len(source))
    for src in np.unique(source):
        members = np.flatnonzero(source == src)
        # the j-th slot (in random order) of a source of n lands at (j + u) / n of the epoch
        key[rng.permutation(members)] = (np.arange(len(members)) + rng.random(len(members))) / len(members)
    return np.argsort(key, kind="stable")


def fit(cfg, height: int, width: int, real: torch.Tensor, slots: tuple[np.ndarray, np.ndarray],
        decoders: dict[int, ConvVAE], seeds: dict[str, int], device,
        log: logging.Logger | None = None) -> tuple[ConvVAE, float]:
    """Train a fresh VAE; returns it and the mean per-image loss of its last epoch."""
    source, index = slots
    torch.manual_seed(seeds["init"])
    vae = ConvVAE(height, width, cfg.latent, cfg.capacity, cfg.stages).to(device)
    opt = torch.optim.Adam(vae.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    order_rng = np.random.default_rng(seeds["order"])
    prior = torch.Generator(device=device).manual_seed(seeds["prior"])
    noise = torch.Generator(device=device).manual_seed(seeds["noise"])
    last = float("nan")
    bar = tqdm(range(cfg.epochs), desc=f"vae epochs ({len(source)} images)", unit="epoch", disable=None, leave=False)
    for epoch in bar:
        vae.train()
        order = epoch_order(source, order_rng)
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            x = _batch(order[start:start + cfg.batch_size], source, index, real, decoders, cfg.synthetic, prior)
            recon, kl = losses(x, *vae(x, noise))
            loss = (recon + cfg.beta * kl).sum()  # summed over the batch, as the notebook
            value = float(loss.detach())
            if not math.isfinite(value):  # NaN weights stay NaN: every later step and metric would be NaN
                raise UserError(f"vae: training diverged: the loss is {value} in epoch {epoch + 1} of {cfg.epochs} "
                                f"(vae.lr {cfg.lr:g}, vae.beta {cfg.beta:g}); lower vae.lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += value
        last = total / len(order)
        bar.set_postfix(loss=f"{last:.2f}")
    if log:
        log.info("trained %d epochs on %d images per epoch: loss %.3f nats/image", cfg.epochs, len(order), last)
    return vae.eval(), last


@torch.no_grad()
def _batch(slots: np.ndarray, source, index, real: torch.Tensor, decoders, synthetic: str,
           prior: torch.Generator) -> torch.Tensor:
    """The images of a batch: real ones gathered, generated ones decoded from fresh z."""
    parts = []
    src = source[slots]
    real_idx = index[slots[src == REAL]]
    if len(real_idx):
        parts.append(real[torch.from_numpy(real_idx).to(real.device)])
    for g in sorted(set(src[src != REAL].tolist())):
        images = decoders[g].sample(int((src == g).sum()), prior, real.device)
        if synthetic == "bernoulli":
            images = torch.bernoulli(images, generator=prior)
        parts.append(images)
    return torch.cat(parts)
