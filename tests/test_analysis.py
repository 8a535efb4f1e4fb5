"""What the trained model learned: reconstructions, class means (Eq. 2), mixtures (Eq. 3), PCA."""

from __future__ import annotations

import pytest
import torch

from convae.analysis import (
    class_means,
    decode,
    decode_grid,
    encode,
    interpolate,
    mixture_latents,
    mixture_matrix,
    mnist_like,
    nearest_class,
    pca_2d,
    reconstruct,
)
from convae.data import to_float
from convae.model import AutoEncoder


def test_encode_is_the_encoder_on_float_images(trained, splits) -> None:
    images = splits.val_images[:30]
    z = encode(trained.model, images, batch_size=7)  # batches must not change the result
    with torch.no_grad():
        expected = trained.model.encoder(to_float(images))
    assert z.shape == (30, 2)
    assert torch.allclose(z, expected, atol=1e-6)


def test_decode_gives_images_in_range(trained) -> None:
    out = decode(trained.model, torch.randn(6, 2, dtype=torch.float64) * 10)
    assert out.shape == (6, 28, 28)
    assert out.dtype == torch.float32
    assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_reconstruct(trained, splits) -> None:
    originals, recons, err = reconstruct(trained.model, splits.val_images[:100])
    assert originals.shape == recons.shape == (100, 28, 28)
    assert err.shape == (100,)
    assert torch.equal(originals, to_float(splits.val_images[:100]).squeeze(1))
    with torch.no_grad():
        expected = trained.model(to_float(splits.val_images[:100])).squeeze(1)
    assert torch.allclose(recons, expected, atol=1e-6)
    assert torch.allclose(err, ((recons - originals) ** 2).mean(dim=(1, 2)), atol=1e-7)


def test_class_means_equals_hand_computation() -> None:
    """Eq. 2: mu_o is the average of E(X) over the samples of class o."""
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(57, 3, generator=g)
    labels = torch.arange(57) % 10
    labels = labels[torch.randperm(57, generator=g)]
    means = class_means(latents, labels)
    assert means.shape == (10, 3)
    for o in range(10):
        rows = [latents[i] for i in range(57) if int(labels[i]) == o]
        hand = sum(rows, torch.zeros(3)) / len(rows)
        assert torch.allclose(means[o], hand, atol=1e-6), o


def test_class_means_of_a_tiny_example() -> None:
    latents = torch.tensor([[float(i), 2.0 * i] for i in range(20)])
    labels = torch.tensor([i % 10 for i in range(20)])  # class o holds samples o and o + 10
    means = class_means(latents, labels)
    expected = torch.tensor([[o + 5.0, 2.0 * o + 10.0] for o in range(10)])
    assert torch.equal(means, expected)


def test_class_means_without_a_class_says_which() -> None:
    labels = torch.tensor([0, 1, 2, 4, 5, 6, 7, 8, 9])
    with pytest.raises(ValueError, match="class 3 has no validation samples"):
        class_means(torch.zeros(9, 2), labels)


def test_class_means_of_the_trained_model(trained, splits, means) -> None:
    z = encode(trained.model, splits.val_images)
    assert means.shape == (10, 2)
    for o in (0, 7):
        assert torch.allclose(means[o], z[splits.val_labels == o].mean(0), atol=1e-6)


def test_mixture_latents() -> None:
    means = torch.randn(10, 4, generator=torch.Generator().manual_seed(1))
    mix = mixture_latents(means)
    assert mix.shape == (10, 10, 4)
    assert torch.allclose(mix.diagonal(dim1=0, dim2=1).T, means)  # the diagonal is mu_o
    assert torch.equal(mix, mix.transpose(0, 1))  # symmetric
    assert torch.allclose(mix[2, 7], (means[2] + means[7]) / 2)


def test_mixture_matrix(trained, means) -> None:
    matrix = mixture_matrix(trained.model, means)
    assert matrix.shape == (10, 10, 28, 28)
    assert float(matrix.min()) >= 0 and float(matrix.max()) <= 1
    diagonal = torch.stack([matrix[o, o] for o in range(10)])
    assert torch.allclose(diagonal, decode(trained.model, means), atol=1e-6)
    assert torch.allclose(matrix[3, 8], decode(trained.model, ((means[3] + means[8]) / 2)[None])[0], atol=1e-6)
    assert torch.allclose(matrix, matrix.transpose(0, 1), atol=1e-6)


def test_interpolate(trained, means) -> None:
    a, b = means[1], means[6]
    assert interpolate(trained.model, a, b, 0.0).shape == (28, 28)
    assert torch.allclose(interpolate(trained.model, a, b, 0.0), decode(trained.model, a[None])[0], atol=1e-6)
    assert torch.allclose(interpolate(trained.model, a, b, 1.0), decode(trained.model, b[None])[0], atol=1e-6)
    half = interpolate(trained.model, a, b, 0.5)
    assert torch.allclose(half, mixture_matrix(trained.model, means)[1, 6], atol=1e-6)  # Eq. 3
    for alpha in (-0.1, 1.5):
        with pytest.raises(ValueError, match="alpha"):
            interpolate(trained.model, a, b, alpha)


def _check_pca(latents: torch.Tensor) -> None:
    pca = pca_2d(latents)
    k = latents.shape[1]
    d = min(2, k)
    assert pca.components.shape == (d, k)
    assert pca.coords.shape == (latents.shape[0], d)
    assert pca.explained.shape == (d,)
    assert bool(((pca.explained >= 0) & (pca.explained <= 1 + 1e-6)).all())
    assert float(pca.explained.sum()) <= 1 + 1e-5
    # orthonormal directions, and coords are the orthogonal projection of the centred latents
    assert torch.allclose(pca.components @ pca.components.T, torch.eye(d), atol=1e-5)
    assert torch.allclose(pca.mean, latents.mean(0), atol=1e-5)
    assert torch.allclose(pca.coords, (latents - latents.mean(0)) @ pca.components.T, atol=1e-4)
    assert torch.allclose(pca.project(latents), pca.coords, atol=1e-4)


@pytest.mark.parametrize("k", [1, 2, 3, 10])
def test_pca_2d_properties(k: int) -> None:
    g = torch.Generator().manual_seed(k)
    scales = torch.linspace(3, 0.5, k)
    _check_pca(torch.randn(200, k, generator=g) * scales + 4)


def test_pca_2d_finds_the_principal_directions() -> None:
    g = torch.Generator().manual_seed(2)
    latents = torch.randn(2000, 5, generator=g, dtype=torch.float64) * torch.tensor([5.0, 0.1, 3.0, 0.1, 0.1])
    pca = pca_2d(latents)
    assert torch.allclose(pca.components[0].abs(), torch.tensor([1.0, 0, 0, 0, 0]), atol=0.02)
    assert torch.allclose(pca.components[1].abs(), torch.tensor([0, 0, 1.0, 0, 0]), atol=0.02)
    # explained variance agrees with the eigenvalues of the covariance
    centred = latents - latents.mean(0)
    eig = torch.linalg.eigvalsh(centred.T @ centred).flip(0)
    assert torch.allclose(pca.explained.double(), eig[:2] / eig.sum(), atol=1e-5)
    assert pca.explained[0] >= pca.explained[1]
    assert 0.99 < float(pca.explained.sum()) <= 1


def test_pca_with_k_1_and_k_2_uses_the_latent_axes() -> None:
    g = torch.Generator().manual_seed(3)
    one = pca_2d(torch.randn(50, 1, generator=g))
    assert torch.equal(one.components, torch.ones(1, 1))
    assert float(one.explained[0]) == pytest.approx(1.0)
    x = torch.randn(50, 2, generator=g) * torch.tensor([2.0, 0.5])
    two = pca_2d(x)
    assert torch.equal(two.components, torch.eye(2))
    assert float(two.explained.sum()) == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(two.lift(two.project(x)), x, atol=1e-5)  # nothing lost with K = 2


def test_lift_inverts_project_within_the_plane() -> None:
    g = torch.Generator().manual_seed(4)
    pca = pca_2d(torch.randn(100, 6, generator=g))
    coords = torch.randn(7, 2, generator=g)
    assert torch.allclose(pca.project(pca.lift(coords)), coords, atol=1e-5)


def test_pca_of_identical_latents_is_finite() -> None:
    pca = pca_2d(torch.ones(20, 4))
    assert torch.isfinite(pca.explained).all() and torch.isfinite(pca.coords).all()
    assert torch.equal(pca.coords, torch.zeros(20, 2))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_decode_grid(k: int) -> None:
    torch.manual_seed(0)
    model = AutoEncoder(2, 2, k)
    pca = pca_2d(torch.randn(40, k))
    xs, ys = torch.linspace(-1, 1, 4), torch.linspace(-2, 2, 3)
    grid = decode_grid(model, pca, xs, ys)
    assert grid.shape == (3, 4, 28, 28)
    x_only = xs[2:3] if k == 1 else torch.stack([xs[2], ys[1]])
    expected = decode(model, pca.lift(x_only[None] if k > 1 else x_only[:, None]))[0]
    assert torch.allclose(grid[1, 2], expected, atol=1e-6)  # row = ys index, column = xs index


def test_nearest_class() -> None:
    means = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    c, d = nearest_class(torch.tensor([8.0, 1.0]), means)
    assert c == 1
    assert torch.allclose(d, torch.tensor([65.0**0.5, 5.0**0.5, 145.0**0.5]))


def _centre_of_mass(img: torch.Tensor) -> tuple[float, float]:
    w = img.to(torch.float64)
    rows, cols = torch.arange(28, dtype=torch.float64), torch.arange(28, dtype=torch.float64)
    m = w.sum()
    return float((w.sum(1) * rows).sum() / m), float((w.sum(0) * cols).sum() / m)


def _ink_box(img: torch.Tensor) -> tuple[int, int]:
    nz = (img > 0).nonzero()
    (r0, c0), (r1, c1) = nz.min(0).values.tolist(), nz.max(0).values.tolist()
    return r1 - r0 + 1, c1 - c0 + 1


@pytest.mark.parametrize(("top", "left", "h", "w"), [(20, 120, 60, 60), (5, 5, 30, 30), (150, 10, 40, 90)])
def test_mnist_like_centres_and_scales_a_drawing(top: int, left: int, h: int, w: int) -> None:
    canvas = torch.zeros(200, 200)
    canvas[top : top + h, left : left + w] = 1.0
    img = mnist_like(canvas)
    assert img.shape == (28, 28) and img.dtype == torch.uint8
    cy, cx = _centre_of_mass(img)
    assert abs(cy - 13.5) <= 1.0 and abs(cx - 13.5) <= 1.0
    bh, bw = _ink_box(img)
    assert max(bh, bw) <= 20 and max(bh, bw) >= 19  # fitted to the 20x20 box
    assert bw / bh == pytest.approx(w / h, rel=0.15)  # aspect ratio kept
    assert int(img.max()) == 255


def test_mnist_like_of_an_off_centre_stroke_is_moved_to_the_middle() -> None:
    canvas = torch.zeros(280, 280)
    canvas[200:260, 10:20] = 1.0  # a short vertical stroke in the bottom-left corner
    img = mnist_like(canvas)
    cy, cx = _centre_of_mass(img)
    assert abs(cy - 13.5) <= 1.0 and abs(cx - 13.5) <= 1.0


def test_mnist_like_of_an_empty_drawing_is_blank() -> None:
    for canvas in (torch.zeros(200, 200), torch.full((50, 80), 0.01)):
        img = mnist_like(canvas)
        assert img.shape == (28, 28) and img.dtype == torch.uint8
        assert int(img.sum()) == 0
