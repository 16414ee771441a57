"""Built-in models and user factories: shapes, sizes, seeding, error reporting."""

from __future__ import annotations

import pytest
import torch

from bench.errors import BuildError
from bench.measure.models.build import build, call
from bench.measure.models.zoo import transformer_heads
from bench.suite import loader as suite_file
from bench.suite.spec import Case, Settings

TINY = {
    "mlp": dict(depth=2, width=16, activation="relu", features=12, classes=5),
    "cnn": dict(depth=3, width=4, activation="silu", image_size=16, classes=5),
    "transformer": dict(depth=1, width=32, activation="gelu", seq_len=8, classes=5),
    "seed-cnn": dict(classes=10),
    "text-classifier": dict(seq_len=16, classes=2),
}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("model", sorted(TINY))
def test_every_zoo_model_builds_and_returns_logits(model):
    case = Case(model=model, batch_size=3, **TINY[model])
    built, inputs = build(case)
    with torch.inference_mode():
        out = call(built.module.eval(), inputs)
    assert out.shape == (3, TINY[model]["classes"])
    assert torch.isfinite(out).all()


def test_mlp_size_follows_depth_and_width():
    built, _ = build(Case(model="mlp", batch_size=1, depth=3, width=10, activation="tanh",
                          features=7, classes=4))
    assert n_params(built.module) == (7 * 10 + 10) + 2 * (10 * 10 + 10) + (10 * 4 + 4)
    assert isinstance(built.module[1], torch.nn.Tanh)


def test_seed_models_match_the_seed_documents():
    seed_cnn, inputs = build(Case(model="seed-cnn", batch_size=2, classes=10))
    assert inputs.shape == (2, 3, 32, 32)
    convs = (3 * 64 * 9 + 64) + (64 * 128 * 9 + 128)
    fcs = (128 * 8 * 8 * 1024 + 1024) + (1024 * 10 + 10)
    assert n_params(seed_cnn.module) == convs + fcs == 8_475_530

    text, tokens = build(Case(model="text-classifier", batch_size=2, seq_len=20, classes=2))
    assert tokens.dtype == torch.int64 and tokens.shape == (2, 20) and tokens.max() < 10_000
    assert n_params(text.module) == 10_000 * 128 + 128 * 2 + 2
    assert text.module.dropout.p == 0.3


def test_cnn_doubles_channels_every_two_blocks():
    built, _ = build(Case(model="cnn", batch_size=1, depth=4, width=8, activation="relu",
                          image_size=32, classes=10))
    convs = [m for m in built.module if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 8, 16, 16]


@pytest.mark.parametrize(("width", "heads"), [(32, 1), (64, 1), (128, 2), (192, 3), (200, 2),
                                              (768, 12)])
def test_transformer_heads_divide_the_width(width, heads):
    assert transformer_heads(width) == heads
    assert width % heads == 0


def test_same_case_builds_the_same_weights_and_input():
    case = Case(model="mlp", batch_size=4, **TINY["mlp"])
    (a, xa), (b, xb) = build(case), build(case)
    assert all(torch.equal(p, q) for p, q in zip(a.module.parameters(), b.module.parameters(),
                                                 strict=True))
    assert torch.equal(xa, xb)
    other_seed = Case(model="mlp", batch_size=4, settings=Settings(seed=1), **TINY["mlp"])
    c, xc = build(other_seed)
    assert not torch.equal(next(a.module.parameters()), next(c.module.parameters()))
    assert not torch.equal(xa, xc)


def test_building_does_not_disturb_the_callers_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build(Case(model="mlp", batch_size=2, **TINY["mlp"]))
    assert torch.equal(torch.rand(3), expected)


def test_input_does_not_depend_on_model_size():
    small = build(Case(model="mlp", batch_size=4, **{**TINY["mlp"], "depth": 1}))[1]
    large = build(Case(model="mlp", batch_size=4, **{**TINY["mlp"], "depth": 5}))[1]
    assert torch.equal(small, large)


def test_user_factory_by_file_path(fixtures_dir):
    case = Case(model=f"{fixtures_dir}/factories.py:tiny", batch_size=2, width=6)
    built, inputs = build(case)
    assert built.module[0].out_features == 6 and inputs.shape == (2, 4)


def test_user_factory_by_module_path(tmp_path, write_suite):
    package = tmp_path / "mynets"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(
        "import torch\n"
        "def make(case):\n"
        "    n = dict(case.model_args)['hidden']\n"
        "    return torch.nn.Linear(3, n), lambda b: torch.ones(b, 3)\n")
    path = write_suite('[[sweep]]\nmodel = "mynets.nets:make"\nmodel_args = { hidden = 5 }\n')
    (case,) = suite_file.load(path).cases
    assert case.name.startswith("make-b1-fp32-cpu-a")
    built, _ = build(case, search_path=[str(tmp_path)])
    assert built.module.out_features == 5


@pytest.mark.parametrize(("model", "match"), [
    ("nosuchpkg.nets:make", 'cannot import "nosuchpkg.nets"'),
    ("{fixtures}/factories.py:nothere", 'has no function "nothere"'),
    ("{fixtures}/missing.py:make", 'no file "{fixtures}/missing.py"'),
    ("{fixtures}/factories.py:wrong_return", "must return \\(torch.nn.Module, make_input\\)"),
])
def test_user_factory_errors_are_build_errors(fixtures_dir, model, match):
    model = model.format(fixtures=fixtures_dir)
    with pytest.raises(BuildError, match=match.format(fixtures=fixtures_dir)):
        build(Case(model=model, batch_size=1))


def test_errors_inside_the_factory_keep_the_users_exception(fixtures_dir):
    with pytest.raises(ValueError, match="width must be even"):
        build(Case(model=f"{fixtures_dir}/factories.py:raises", batch_size=1))
