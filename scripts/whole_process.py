"""One epoch of the assignment as whole processes: a plain script against `python -m convae train`.

    .venv/bin/python -m scripts.whole_process                # 2 rounds, alternating; MNIST in data/
    .venv/bin/python -m scripts.whole_process --rounds 3 --epochs 1

The plain script is the assignment written as a student would (`python -m scripts.whole_process
--plain`): torchvision's MNIST with ToTensor, a DataLoader of 32 shuffled images, Adam 0.001, MSE,
`loss.item()` every step, validation on the 10,000 test images, the weights saved at the end; the
network is the project's (Table 1). The other is `python -m convae train --epochs N` (checkpoint,
metrics.json, Figure 1 and 2 included). Each is timed from its process's start to its exit; the rounds
alternate which goes first. Prints each run and the medians; it measures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def plain(epochs: int, out: Path) -> None:
    """The assignment's loop, as plain as it reads."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    from convae.data import data_root
    from convae.model import AutoEncoder

    torch.manual_seed(0)
    root = str(data_root())
    train_set = datasets.MNIST(root, train=True, download=False, transform=transforms.ToTensor())
    val_set = datasets.MNIST(root, train=False, download=False, transform=transforms.ToTensor())
    loader = DataLoader(train_set, batch_size=32, shuffle=True)
    model = AutoEncoder(32, 32, 10)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    loss_fn = nn.MSELoss()
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for x, _ in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(x), x)
            loss.backward()
            optimizer.step()
            total += loss.item()
        model.eval()
        with torch.no_grad():
            val = sum(loss_fn(model(x), x).item() * len(x) for x, _ in DataLoader(val_set, batch_size=100))
        print(f"epoch {epoch + 1}: training loss {total / len(loader):.5f}, validation loss {val / len(val_set):.5f}")
    torch.save(model.state_dict(), out / "plain.pt")


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--plain", action="store_true", help="run the plain script itself (what is timed)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.plain:
        plain(args.epochs, args.out or Path("."))
        return 0
    print(f"load average at start {os.getloadavg()[0]:.1f}", flush=True)
    times: dict[str, list[float]] = {"plain script": [], "convae train": []}
    with tempfile.TemporaryDirectory() as tmp:
        commands = {
            "plain script": [sys.executable, "-m", "scripts.whole_process", "--plain", "--epochs", str(args.epochs)],
            "convae train": [sys.executable, "-m", "convae", "train", "--epochs", str(args.epochs), "--no-resume"],
        }
        commands["plain script"] += ["--out", tmp]
        commands["convae train"] += ["--out", str(Path(tmp) / "convae")]
        for r in range(args.rounds):
            for name in list(commands) if r % 2 == 0 else list(commands)[::-1]:
                took = timed(commands[name])
                times[name].append(took)
                print(f"round {r + 1}: {name}, {args.epochs} epoch(s), process start to exit: {took:.1f} s", flush=True)
    p, c = statistics.median(times["plain script"]), statistics.median(times["convae train"])
    print(f"medians: plain script {p:.1f} s, convae train {c:.1f} s: {p / c:.2f}x (target at least 1.8x)")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
