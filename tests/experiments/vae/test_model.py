"""The conv VAE: shapes for both image sizes, loss values, safetensors round trip."""
import errno
import math
import os

import pytest
import torch

from collapse_hpc.errors import UserError
from collapse_hpc.experiments.vae import model
from tests.helpers import refuse_reads, safetensors_refuses


@pytest.mark.parametrize("size, bottleneck", [(8, 2), (28, 7)])
def test_shapes_follow_the_image_size(size, bottleneck):
    vae = model.ConvVAE(size, size, latent=20, capacity=8, stages=2)
    assert vae.bottleneck == (16, bottleneck, bottleneck)
    x = torch.rand(3, 1, size, size)
    logits, mu, logvar = vae(x, torch.Generator().manual_seed(0))
    assert logits.shape == x.shape and mu.shape == logvar.shape == (3, 20)
    s = vae.sample(5, torch.Generator().manual_seed(0), "cpu")
    assert s.shape == (5, 1, size, size) and 0 <= s.min() and s.max() <= 1


def test_paper_architecture_on_mnist():
    vae = model.ConvVAE(28, 28)  # defaults: latent 20, capacity 64, two stages
    convs = [m for m in vae.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == \
        [(1, 64, (4, 4), (2, 2)), (64, 128, (4, 4), (2, 2))]
    assert vae.mu.in_features == 128 * 7 * 7 and vae.mu.out_features == 20


def test_decoder_has_no_relu_after_the_projection():
    """The notebook's decoder: fc -> view -> relu(convT) -> sigmoid(convT); negative outputs of
    the fc reach the first transposed conv unchanged."""
    vae = model.ConvVAE(8, 8, latent=4, capacity=4).eval()
    with torch.no_grad():
        vae.project.weight.zero_()
        vae.project.bias.fill_(-1.0)  # every projected value negative: a ReLU here would zero them
        z = torch.randn(3, 4)
        expected = vae.decoder(torch.full((3, *vae.bottleneck), -1.0))
        assert torch.allclose(vae.decode_logits(z), expected)
        assert not torch.allclose(expected, vae.decoder(torch.zeros(3, *vae.bottleneck)))
    assert [type(m).__name__ for m in vae.decoder] == ["ConvTranspose2d", "ReLU", "ConvTranspose2d"]


def test_stages_must_divide_the_image():
    with pytest.raises(UserError, match="stride-2"):
        model.ConvVAE(28, 28, stages=3)


def test_losses_known_values():
    x = torch.full((1, 1, 2, 2), 0.5)
    recon, kl = model.losses(x, torch.zeros_like(x), torch.zeros(1, 3), torch.zeros(1, 3))
    assert recon.item() == pytest.approx(4 * math.log(2))  # 4 pixels, p = 0.5
    assert kl.item() == 0.0  # posterior = prior
    _, kl = model.losses(x, torch.zeros_like(x), torch.ones(1, 3), torch.zeros(1, 3))
    assert kl.item() == pytest.approx(1.5)  # 3 dims x mu^2 / 2


def test_safetensors_round_trip(tmp_path):
    torch.manual_seed(0)
    vae = model.ConvVAE(8, 8, latent=4, capacity=4).eval()
    model.save(vae, tmp_path / "m.safetensors")
    back = model.load(tmp_path / "m.safetensors")
    assert back.arch == vae.arch
    z = torch.randn(7, 4)
    assert torch.equal(vae.decode(z), back.decode(z))


def test_loading_a_foreign_file_is_a_user_error(tmp_path):
    (tmp_path / "m.safetensors").write_bytes(b"\0" * 20)
    with pytest.raises(UserError, match="not a VAE checkpoint"):
        model.load(tmp_path / "m.safetensors")


@pytest.mark.parametrize("refusal, refuse", [(errno.EACCES, refuse_reads), (errno.EIO, safetensors_refuses)],
                         ids=["not permitted", "an I/O error"])
def test_a_model_the_file_system_will_not_read_now_is_said_so_not_called_foreign(tmp_path, monkeypatch, refusal,
                                                                                 refuse):
    """A previous generation's VAE whose read the file system refused was called "not a VAE checkpoint of
    this project": a whole file the user might delete, its generation then made again. Now the line says
    the read was refused, and which error, the file kept."""
    path = (tmp_path / "m.safetensors").absolute()
    model.save(model.ConvVAE(8, 8, latent=4, capacity=4), path)
    refuse(monkeypatch, path, refusal)
    with pytest.raises(UserError) as said:
        model.load(path)
    monkeypatch.undo()
    assert str(said.value) == (f"VAE model {path}: not read ({os.strerror(refusal)}): kept as it is; the generation "
                               f"that reads it goes on once the file reads again (its permissions, the file system): "
                               f"run the same command again")
    assert model.load(path).arch["latent"] == 4
