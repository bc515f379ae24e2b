"""VAE recursion (the paper's notebook "VAE_experiments"): a chain of generations, each a
fresh convolutional VAE trained on images decoded from the previous generation's prior.

Files: config.py (the vae section), data.py (digits / MNIST to Parquet), model.py (the VAE),
train.py (one generation's training on the regime's mix), classifier.py (the yardstick),
metrics.py, grid.py (samples.png), generation.py (one generation, start to end).

Regimes: all of collapse_hpc.regimes: replace (with keep_fraction: that share of each batch
is real), accumulate (real + samples of every earlier generation; the epoch grows) and
accumulate-subsample (the same pool, subsampled to the real data's size).
"""
from __future__ import annotations

from pathlib import Path

from collapse_hpc.errors import UserError
from collapse_hpc.experiments.base import Experiment, Registration, check_prepared, sections_placed
from collapse_hpc.experiments.vae.config import VaeConfig, check_stages

# a latent mean in latents.parquet: float32 values in a float64 column, split and compressed (4.25 measured)
LATENT_BYTES = 4.5
# copies of a training batch's activations a step holds: autograd's saved maps, their gradients in backward and
# the convolutions' transients (peak RSS on a CPU: 3.1 times them at 28x28, 4.4 at 8x8); the allocator keeps
# much of it through the evaluation, so both are counted
STEP_COPIES = 5
# (height, width, training images) of the built-in data sets (data.py: digits 80% of 1,797)
DIMS = {"digits": (8, 8, 1438), "mnist": (28, 28, 60000)}


class Vae(Experiment):
    name = "vae"
    shape = "chain"
    job = "gpu1"
    resumable = ()  # a generation is short (the demo's: 5 s on 2 CPU cores): redone whole if interrupted
    memory_keys = ("capacity", "latent", "batch_size", "eval_samples", "synthetic_size", "classifier_hidden")
    title = "Variational autoencoder"
    order = 40
    report_files = ("samples.png", "latents.parquet")  # the sample grids, the latent spread
    metrics = ("elbo, recon, kl: on the real test split, per image (nats); class_entropy and class_0 … class_9: "
               "the classifier's labels of generated samples; pixel_variance; frechet: Fréchet distance of "
               "classifier features of generated and real images; the tails: class_min_share, the rarest class's "
               "share of the labels (among the real_classes classes of the real training images), and "
               "latent_tail_share, the share of generated images whose latent mean under generation 0's encoder "
               "lies beyond the real training images' 99th-percentile radius; train_loss, classifier_accuracy; "
               "real_share: the share of real images in the training data (see vae/metrics.py).")
    datasets = {"digits": "collapse_hpc.experiments.vae.data:prepare_digits",
                "mnist": "collapse_hpc.experiments.vae.data:prepare_mnist"}
    local_data = "collapse_hpc.experiments.vae.data:prepare_local"
    local_files = ("*-idx1-ubyte", "*-idx3-ubyte", "*-idx1-ubyte.gz", "*-idx3-ubyte.gz")
    local_about = ("grey images as a folder of the four IDX files of MNIST's names (train-images-idx3-ubyte, "
                   "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; .gz or not; "
                   "labels 0..9)")

    def check(self, run) -> None:
        """digits is prepared by the run when missing (offline, seconds); anything else must exist,
        under every regime's overrides."""
        from collapse_hpc.experiments.vae.data import SPLITS, check_digits_room, check_images

        for cfg, where in sections_placed(self.name, run):
            if cfg.dataset != "digits":
                check_prepared(self.name, run, SPLITS, cfg, where("dataset"), self.datasets)
                check_images(Path(run.data_dir), cfg.dataset, where("dataset"))  # not the lm's text
            else:
                check_digits_room(Path(run.data_dir))
            dims = _dims(run, cfg.dataset)
            if dims:  # before the run folder: the model refused it only inside the first generation
                check_stages(dims[0], dims[1], cfg.stages)
            if cfg.device == "cuda" and run.executor != "slurm":  # a Slurm job's node is not this machine
                _check_cuda()

    def run_unit(self, ctx) -> None:
        from collapse_hpc.experiments.vae.generation import run

        run(ctx)

    def generations(self, run) -> int:
        return run.generations_of(self.name)

    def memory(self, run, variant) -> int | None:
        """The float32 images one generation holds: the real training images, as many generated ones
        (or synthetic_size), the scored samples and those through generation 0's encoder; the model
        and classifier with their gradients and Adam's two moments, one batch's activations, and the
        scoring and sampling passes (_evaluation); a data set of the user's is sized by its card, where
        it is prepared here (else None: unknown)."""
        cfg = variant.section(run)
        dims = _dims(run, cfg.dataset)
        if dims is None:
            return None
        height, width, train = dims
        images = height * width * (train + (cfg.synthetic_size or train) + cfg.eval_samples + cfg.latent_samples)
        return (4 * images + 16 * _parameters(cfg, height, width) + 4 * STEP_COPIES * _activations(cfg, height, width)
                + _evaluation(cfg, height, width))

    def disk(self, run, variant, index: int) -> int | None:
        """Its model.safetensors (the fp32 VAE: the next generation samples its training images from it)
        and latents.parquet (latent_samples rows of `latent` means); samples.png and metrics.parquet are
        a few KB, the run's one classifier a few hundred."""
        cfg = variant.section(run)
        dims = _dims(run, cfg.dataset)
        if dims is None:
            return None
        return 4 * _vae_parameters(cfg, dims[0], dims[1]) + int(LATENT_BYTES * cfg.latent_samples * cfg.latent)

    def metrics_schema(self, section=None):
        from collapse_hpc.experiments.vae.metrics import SCHEMA

        return SCHEMA

    def figures(self):
        from collapse_hpc.experiments.vae.figures import FIGURES

        return FIGURES


def _check_cuda() -> None:
    """A local run's units run on this machine: without a GPU each generation would fail at its start."""
    import torch

    if not torch.cuda.is_available():
        raise UserError("vae.device: cuda, but this machine has no GPU that torch can use, and a local run's units "
                        "run here; set vae.device to auto or cpu, or submit the run to Slurm")


def _parameters(cfg, height: int, width: int) -> int:
    """Weights of model.ConvVAE and of classifier.DigitClassifier, counted as integers (a size of 1e8 is
    a count)."""
    h = cfg.classifier_hidden
    return _vae_parameters(cfg, height, width) + height * width * 2 * h + 2 * h * h + 10 * h


def _vae_parameters(cfg, height: int, width: int) -> int:
    """Weights of model.ConvVAE: its convolutions twice, encoder and decoder; three linear maps to and
    from the latent (their biases, a few hundred, left out)."""
    channels = [1] + [cfg.capacity * 2**i for i in range(cfg.stages)]
    convs = sum(16 * a * b + b for a, b in zip(channels, channels[1:]))
    flat = channels[-1] * (height >> cfg.stages) * (width >> cfg.stages)
    return 2 * convs + 3 * flat * cfg.latent


def _maps(cfg, height: int, width: int) -> int:
    """Values of one image's feature maps through the encoder: each stage's."""
    return sum(cfg.capacity * 2**i * (height >> i + 1) * (width >> i + 1) for i in range(cfg.stages))


def _activations(cfg, height: int, width: int) -> int:
    """Values one training batch keeps for its backward pass: each stage's feature maps, in the
    encoder and the decoder."""
    return 2 * cfg.batch_size * (_maps(cfg, height, width) + height * width)


def _evaluation(cfg, height: int, width: int) -> int:
    """Bytes scoring and sampling hold beside the images: the classifier's float64 features of every
    generated image three times (predict's batches, their concatenation, frechet's centred copy); the
    feature maps of metrics.EVAL_BATCH images through the encoder and of config.SAMPLE_BATCH prior samples
    through the decoder, a convolution's output beside its ReLU's each (peak RSS: 1.67 times one copy of the
    encoder's, 28x28 images). The two passes never overlap, but the sampling pass was left out and the
    allocator keeps part of each pass's maps: peak RSS at 28x28 was 0.56-0.70 GB on one machine and 0.90 GB on
    another (same code and lock), against 0.90 GB counted without the sampling pass."""
    from collapse_hpc.experiments.vae import config
    from collapse_hpc.experiments.vae.metrics import EVAL_BATCH

    maps = _maps(cfg, height, width)
    return (3 * 8 * cfg.classifier_hidden * cfg.eval_samples + 2 * 4 * EVAL_BATCH * maps
            + 2 * 4 * config.SAMPLE_BATCH * (maps + height * width))


def _dims(run, dataset: str) -> tuple[int, int, int] | None:
    """(height, width, training images): a built-in data set's, else its card's where it is prepared
    here (data.py writes them); None where nothing here states them."""
    from collapse_hpc.store.cards import read_card

    if dataset in DIMS:
        return DIMS[dataset]
    card = read_card(Path(run.data_dir) / dataset) or {}
    try:
        return int(card["height"]), int(card["width"]), int(card["splits"]["train"])
    except (KeyError, TypeError, ValueError):
        return None


EXPERIMENT = Vae()
REGISTRATION = Registration(VaeConfig, EXPERIMENT)
