"""The dashboard's opt-in fast demo batch sizes against the assignment's batch 32: speed and final loss.

.venv/bin/python -m scripts.fast_mode        # from the repository root; needs MNIST in data/
"""

import torch

from convae.data import load_splits
from convae.train import TrainConfig, train


def main() -> None:
    splits = load_splits()
    print(f"torch threads {torch.get_num_threads()}")
    print("| batch | lr | epochs | images/s | seconds | final validation MSE |")
    print("| --- | --- | --- | --- | --- | --- |")
    for bs, lr in ((32, 1e-3), (128, 1e-3), (128, 3e-3), (256, 3e-3)):
        events = []
        r = train(TrainConfig(batch_size=bs, lr=lr, epochs=3), splits, on_event=events.append)
        rate = [e.samples_per_s for e in events if e.kind == "step"][-1]
        loss = r.history.epochs[-1]["val_loss"]
        print(f"| {bs} | {lr:g} | 3 | {rate:,.0f} | {r.seconds:.0f} | {loss:.5f} |", flush=True)


if __name__ == "__main__":
    main()
