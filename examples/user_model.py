"""A user model for cimdse: any file with a factory that returns a torch.nn.Module.

cimdse compile --model examples/user_model.py:make_model --input 1x16x16 --arch demo --out runs/user
cimdse sweep examples/sweep_user.yaml --out runs/sweep-user
"""

from __future__ import annotations

from torch import nn


class TinyCNN(nn.Module):
    """Two conv blocks and a classifier for 1x16x16 inputs (e.g. downscaled digits)."""

    def __init__(self, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * 4 * 4, 32), nn.ReLU(), nn.Linear(32, num_classes)
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def make_model() -> nn.Module:
    return TinyCNN()
