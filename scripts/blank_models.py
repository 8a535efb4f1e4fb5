"""How often does a model come out blank (the output sigmoid saturated at 0), with and without the
opt-in mean-brightness start? Trains K = 2 and K = 32 for one epoch on 10,000 MNIST images, seeds 0-3.

    .venv/bin/python -m scripts.blank_models
"""

from __future__ import annotations

from convae.analysis import blank_mse, learned_nothing
from convae.data import ensure_data, load_splits
from convae.train import TrainConfig, train


def main() -> None:
    splits = load_splits(ensure_data())
    blank = blank_mse(splits.val_images)
    print(f"validation MSE of an all-black output: {blank:.5f}")
    print("| start | K | seed | validation MSE after 1 epoch (10,000 images) | blank? |")
    print("| --- | --- | --- | --- | --- |")
    for mean_init in (False, True):
        for k in (2, 32):
            for seed in range(4):
                config = TrainConfig(
                    k=k, epochs=1, train_size=10000, seed=seed, mean_init=mean_init, on_collapse="continue"
                )
                loss = train(config, splits).history.epochs[-1]["val_loss"]
                start = "mean brightness" if mean_init else "default"
                print(
                    f"| {start} | {k} | {seed} | {loss:.5f} | {'yes' if learned_nothing(loss, blank) else 'no'} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
