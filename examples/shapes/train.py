"""Train ShapesNet on freshly drawn shapes and write its weights (CPU, fixed seed).

python examples/shapes/train.py [--out examples/shapes/weights.pt] [--per-class N] [--epochs E]

The training pictures come from ``make_images.draw_set`` with a seed other than the
evaluation set's, so the committed images in ``images/`` are never trained on. Inputs are
prepared the way ``featreport build --input-size 64 --mean 0.5,0.5,0.5 --std 0.25,0.25,0.25``
prepares them, so the report sees what training saw.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchvision.transforms import v2

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_images import CLASSES, draw_set  # noqa: E402
from model import ShapesNet  # noqa: E402

TRAIN_SEED = 1  # epoch e draws with seed TRAIN_SEED + e
EVAL_SEED = 0
# featreport's --input-size 64: shorter side to round(64 / 0.875) = 73 px, centre crop 64.
PREPARE = v2.Compose(
    [
        v2.Resize(73, antialias=True),
        v2.CenterCrop(64),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize([0.5, 0.5, 0.5], [0.25, 0.25, 0.25]),
    ]
)


def tensors(per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw a set and return it as a normalized image batch and class indices."""
    drawn = draw_set(per_class, seed)
    images = PREPARE(torch.stack([v2.functional.pil_to_tensor(image) for _, _, image in drawn]))
    labels = torch.tensor([CLASSES.index(kind) for kind, _, _ in drawn])
    return images, labels


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Return the share of ``images`` the model classifies as ``labels``."""
    model.eval()
    with torch.inference_mode():
        predicted = torch.cat([model(batch).argmax(1) for batch in images.split(256)])
    return (predicted == labels).float().mean().item()


def train(
    per_class: int,
    epochs: int,
    log: bool = True,
    after_epoch: Callable[[int, ShapesNet], None] | None = None,
) -> tuple[ShapesNet, float]:
    """Train from a fixed seed; return the model and its accuracy on the evaluation set.

    ``after_epoch(e, model)`` is called after each epoch ``e`` (from 1), to save checkpoints.
    """
    torch.manual_seed(0)
    eval_images, eval_labels = tensors(20, EVAL_SEED)
    model = ShapesNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    steps = epochs * ((per_class * len(CLASSES) + 127) // 128)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=5e-3, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        model.train()
        started = time.perf_counter()
        # Fresh pictures every epoch: the generator is cheap, and the model cannot memorize.
        images, labels = tensors(per_class, TRAIN_SEED + epoch)
        order = torch.randperm(len(images), generator=generator)
        total = 0.0
        for batch in order.split(128):
            x = images[batch]
            # Mirror half the batch: shapes have no handedness, and it doubles the data.
            flip = torch.rand(len(x), generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            loss = loss_fn(model(x), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
        if after_epoch is not None:
            after_epoch(epoch + 1, model)
        if log:
            print(
                f"epoch {epoch + 1}/{epochs}: loss {total / len(images):.3f}, "
                f"eval accuracy {accuracy(model, eval_images, eval_labels):.1%} "
                f"({time.perf_counter() - started:.1f} s)"
            )
    return model, accuracy(model, eval_images, eval_labels)


def main() -> None:
    """Train the shapes model from a fixed seed and write its weights."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "weights.pt")
    parser.add_argument("--per-class", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=16)
    args = parser.parse_args()
    # One thread and deterministic kernels: the same weights on every run of this machine.
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    model, score = train(args.per_class, args.epochs)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    torch.save(state, args.out)
    print(f"wrote {args.out} (eval accuracy {score:.1%})")


if __name__ == "__main__":
    main()
