"""The vae section: the paper's convolutional VAE (its Methods and the authors' notebook; docs/vae.md).

Defaults are the notebook's: MNIST-sized model (latent 20, capacity 64, two stride-2 stages),
summed BCE + KL, Adam lr 1e-3, weight decay 1e-5, batch 256, 30 epochs. The offline default
data set is scikit-learn's 8x8 digits; the same architecture fits it (8 -> 4 -> 2).
"""
from __future__ import annotations

from dataclasses import dataclass

from collapse_hpc.config import FILE_NAME_CHARS, Section, knob
from collapse_hpc.errors import UserError

# prior samples model.sample decodes at once: the memory estimate counts their decoder maps
SAMPLE_BATCH = 2048


@dataclass
class VaeConfig(Section):
    dataset: str = knob("digits", "prepared data set of images: digits (8x8, offline), mnist (28x28), or a "
                                  "--from name (your IDX files, labels 0..9)", chars=FILE_NAME_CHARS)
    # model
    latent: int = knob(20, "latent dimensions", min=1)
    capacity: int = knob(64, "channels of the first conv layer (doubled at each further stage)", min=1)
    stages: int = knob(2, "stride-2 conv stages; height and width must be divisible by 2**stages", min=1, max=5)
    beta: float = knob(1.0, "weight of the KL term (1: the ELBO)", min=0)
    # training
    epochs: int = knob(30, "epochs per generation", min=1)
    batch_size: int = knob(256, "images per batch", min=1)
    lr: float = knob(1e-3, "Adam learning rate", gt=0)
    weight_decay: float = knob(1e-5, "Adam weight decay", min=0)
    synthetic_size: int = knob(0, "generated images per generation and epoch (0: as many as real training images)",
                               min=0)
    binarize: bool = knob(False, "train on binary real images (each pixel drawn once per run from its grey "
                          "level), the domain of bernoulli samples; false: the grey images, as the notebook")
    synthetic: str = knob("mean", "what a decoder emits as a training image: mean (the sigmoid output, as "
                          "the notebook) or bernoulli (binary pixels drawn from it)", choices=("mean", "bernoulli"))
    # evaluation
    eval_samples: int = knob(10000, "generated images scored per generation (class histogram, variance, "
                             "Frechet distance, latent tail)", min=100)
    latent_samples: int = knob(2000, "generated images encoded by generation 0's encoder per generation "
                               "(latents.parquet: the paper's latent-spread figure; a spread needs two)", min=2)
    latent_figure: str = knob("raw", "the report's latent figure: raw (the notebook: every dimension's latent means "
                              "pooled as they are) or standardised (each dimension centred and divided by its "
                              "spread in generation 0's samples, dimensions generation 0 leaves unused dropped)",
                              choices=("raw", "standardised"), hashed=False)
    grid_scale: int = knob(4, "screen pixels per image pixel in samples.png (10x10 grid)", min=1, max=16)
    classifier_epochs: int = knob(30, "epochs of the digit classifier (trained once per run on real data)", min=1)
    classifier_hidden: int = knob(128, "width of the classifier's penultimate layer (Frechet features)", min=2)
    device: str = knob("auto", "auto (cuda if available), cpu or cuda", choices=("auto", "cpu", "cuda"),
                       hashed=False, exact=False)


def check_stages(height: int, width: int, stages: int) -> None:
    """Each stride-2 stage halves the image: 2**stages must divide both sides (model.ConvVAE)."""
    if height % 2 ** stages or width % 2 ** stages:
        raise UserError(f"vae: {height}x{width} images cannot pass {stages} stride-2 stages "
                        f"(set vae.stages so that 2**stages divides both)")
