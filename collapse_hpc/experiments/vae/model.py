"""The notebook's convolutional VAE, sized to the images.

Encoder: `stages` convs (k4 s2 p1, ReLU; channels capacity, 2*capacity, …) -> linear heads for
mu and logvar. Decoder: linear -> the last conv's shape -> mirrored transposed convs (ReLU between
them) -> one channel. As in the notebook (fc -> view -> relu(convT) -> sigmoid(convT)) there is no
ReLU after the linear projection: the first transposed conv sees negative values too. With
stages=2 and capacity 64 this is the notebook's MNIST model (28 -> 14 -> 7); the same two stages
take 8x8 digits to a 2x2 bottleneck. The decoder returns logits: the loss uses
BCE with logits (the same summed BCE as on sigmoid outputs, without its overflow).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from collapse_hpc.errors import UserError
from collapse_hpc.experiments.vae.config import SAMPLE_BATCH, check_stages
from collapse_hpc.store.reads import NotRead, refused_read, safetensors_open


class ConvVAE(nn.Module):
    def __init__(self, height: int, width: int, latent: int = 20, capacity: int = 64, stages: int = 2):
        super().__init__()
        check_stages(height, width, stages)
        self.arch = {"height": height, "width": width, "latent": latent, "capacity": capacity, "stages": stages}
        channels = [1] + [capacity * 2 ** i for i in range(stages)]
        enc = []
        for cin, cout in zip(channels[:-1], channels[1:]):
            enc += [nn.Conv2d(cin, cout, 4, 2, 1), nn.ReLU()]
        self.encoder = nn.Sequential(*enc, nn.Flatten())
        self.bottleneck = (channels[-1], height >> stages, width >> stages)
        flat = channels[-1] * (height >> stages) * (width >> stages)
        self.mu = nn.Linear(flat, latent)
        self.logvar = nn.Linear(flat, latent)
        self.project = nn.Linear(latent, flat)
        dec = []
        for cin, cout in zip(channels[::-1][:-1], channels[::-1][1:]):
            dec += [nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.ReLU()]
        self.decoder = nn.Sequential(*dec[:-1])  # no ReLU on the logits

    @property
    def latent(self) -> int:
        return self.arch["latent"]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.project(z).view(-1, *self.bottleneck))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] (the sigmoid of the decoder)."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + eps * torch.exp(0.5 * logvar)
        return self.decode_logits(z), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, device, batch: int = SAMPLE_BATCH) -> torch.Tensor:
        """n decoded prior samples z ~ N(0, I), as images in [0, 1]."""
        out = []
        for start in range(0, n, batch):
            z = torch.randn(min(batch, n - start), self.latent, generator=generator, device=device)
            out.append(self.decode(z))
        return torch.cat(out)


def losses(x: torch.Tensor, logits: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor):
    """Per-image summed BCE (reconstruction) and KL to N(0, I), in nats."""
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
    return recon, kl


def save(model: ConvVAE, path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"arch": json.dumps(model.arch, sort_keys=True)})


def load(path: Path, device="cpu") -> ConvVAE:
    from safetensors.torch import load_file

    try:
        with safetensors_open(path) as f:
            arch = json.loads(f.metadata()["arch"])
        state = load_file(str(path))
    except Exception as e:  # missing, truncated or foreign file
        if refused_read(e) and Path(path).is_file():  # not its bytes: neither deleted nor made again
            raise NotRead(f"VAE model {path}", e, "kept as it is; the generation that reads it goes on") from None
        raise UserError(f"{path}: not a VAE checkpoint of this project ({e})") from None
    model = ConvVAE(**arch)
    model.load_state_dict(state)
    return model.to(device).eval()
