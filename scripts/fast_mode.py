"""The dashboard's opt-in fast demo batch sizes against the assignment's batch 32: speed and final loss.

.venv/bin/python scripts/fast_mode.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from convae.data import load_splits  # noqa: E402
from convae.train import TrainConfig, train  # noqa: E402

s = load_splits()
print(f"torch threads {torch.get_num_threads()}")
print("| batch | lr | epochs | images/s | seconds | final validation MSE |")
print("| --- | --- | --- | --- | --- | --- |")
for bs, lr in ((32, 1e-3), (128, 1e-3), (128, 3e-3), (256, 3e-3)):
    ev = []
    r = train(TrainConfig(batch_size=bs, lr=lr, epochs=3), s, on_event=ev.append)
    rate = [e.samples_per_s for e in ev if e.kind == "step"][-1]
    print(f"| {bs} | {lr:g} | 3 | {rate:,.0f} | {r.seconds:.0f} | {r.history.epochs[-1]['val_loss']:.5f} |", flush=True)
