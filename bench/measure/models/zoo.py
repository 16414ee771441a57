"""Built-in models. Every one is a classifier returning logits of shape (batch, classes), so
training mode, fidelity (top-1 agreement) and pruning treat them alike.

Builders take the `Case` (model defaults already filled in) and are called with torch's global
RNG seeded, so the same case builds the same weights everywhere.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.measure.models.build import BuiltModel, random_features, random_images, random_tokens
from bench.suite.spec import Case

#: Token vocabulary of the token-input models (the seed text classifier's 10000).
VOCAB_SIZE = 10_000


def activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}[name]()


def _int(value: int | None) -> int:
    assert value is not None, "the spec fills model defaults before building"
    return value


def build_mlp(case: Case) -> BuiltModel:
    depth, width, features = _int(case.depth), _int(case.width), _int(case.features)
    layers: list[nn.Module] = []
    fan_in = features
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), activation(case.activation or "relu")]
        fan_in = width
    layers.append(nn.Linear(fan_in, _int(case.classes)))
    return BuiltModel(nn.Sequential(*layers), random_features(features))


def build_cnn(case: Case) -> BuiltModel:
    """VGG-style: channels double and the map halves every two blocks while it is > 4x4."""
    depth, width, size = _int(case.depth), _int(case.width), _int(case.image_size)
    layers: list[nn.Module] = []
    channels_in, side = 3, size
    for block in range(depth):
        channels = width * 2 ** (block // 2)
        layers += [nn.Conv2d(channels_in, channels, 3, padding=1, bias=False),
                   nn.BatchNorm2d(channels), activation(case.activation or "relu")]
        if block % 2 == 1 and side > 4:
            layers.append(nn.MaxPool2d(2))
            side //= 2
        channels_in = channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels_in, _int(case.classes))]
    return BuiltModel(nn.Sequential(*layers), random_images(size))


def transformer_heads(width: int) -> int:
    """One head per 64 dims (BERT's ratio), at least one, and always dividing the width."""
    heads = max(1, width // 64)
    while width % heads:
        heads -= 1
    return heads


class TransformerClassifier(nn.Module):
    """Token embedding + learned positions, an encoder stack, mean pooling, a linear head."""

    def __init__(self, depth: int, width: int, act: str, seq_len: int, classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB_SIZE, width)
        self.position = nn.Parameter(torch.randn(1, seq_len, width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model=width, nhead=transformer_heads(width), dim_feedforward=4 * width,
            dropout=0.1, activation=activation(act) if act not in ("relu", "gelu") else act,
            batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=depth, enable_nested_tensor=False)
        self.head = nn.Linear(width, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(self.embed(tokens) + self.position[:, : tokens.shape[1]])
        return self.head(hidden.mean(dim=1))


def build_transformer(case: Case) -> BuiltModel:
    seq_len = _int(case.seq_len)
    module = TransformerClassifier(_int(case.depth), _int(case.width), case.activation or "gelu",
                                   seq_len, _int(case.classes))
    return BuiltModel(module, random_tokens(seq_len, VOCAB_SIZE))


def build_seed_cnn(case: Case) -> BuiltModel:
    """The seed documents' image classifier: two conv/ReLU/pool stages and two linears."""
    module = nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(128 * 8 * 8, 1024), nn.ReLU(), nn.Linear(1024, _int(case.classes)),
    )
    return BuiltModel(module, random_images(32))


class TextClassifier(nn.Module):
    """The seed documents' text classifier: embedding, mean over tokens, dropout, linear."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB_SIZE, 128)
        self.dropout = nn.Dropout(0.3)
        self.fc = nn.Linear(128, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.embedding(tokens).mean(dim=1)))


def build_text_classifier(case: Case) -> BuiltModel:
    return BuiltModel(TextClassifier(_int(case.classes)),
                      random_tokens(_int(case.seq_len), VOCAB_SIZE))
