"""Suite files: validation messages, expansion, exclusion, stable ids and names."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import replace

import pytest

from bench.errors import SpecError
from bench.suite import loader as suite_file
from bench.suite.axes import Prune
from bench.suite.spec import Case, Settings


def load_error(write_suite, body: str) -> str:
    path = write_suite(body)
    with pytest.raises(SpecError) as info:
        suite_file.load(path)
    message = str(info.value)
    assert message.startswith(str(path)), "every error names the file first"
    return message


# ---- good suites ----------------------------------------------------------------------------
def test_cartesian_product_minus_excludes(write_suite):
    suite = suite_file.load(write_suite("""
        [[sweep]]
        model = ["mlp"]
        depth = [2, 4]
        width = [64, 128, 256]
        activation = ["relu", "gelu"]
        exclude = [{ depth = 4, width = [128, 256] }]
    """))
    assert len(suite.cases) == 2 * 3 * 2 - 2 * 2
    assert not any(c.depth == 4 and c.width in (128, 256) for c in suite.cases)
    assert {c.activation for c in suite.cases} == {"relu", "gelu"}


def test_scalars_are_one_value_axes_and_defaults_fill_in(write_suite):
    suite = suite_file.load(write_suite('[[sweep]]\nmodel = "mlp"\nwidth = 32\n'))
    (case,) = suite.cases
    assert (case.depth, case.width, case.features, case.batch_size) == (2, 32, 256, 1)
    assert (case.device, case.precision, case.compile, case.mode) == ("cpu", "fp32", "eager",
                                                                      "inference")


def test_all_axes_parse(write_suite):
    suite = suite_file.load(write_suite("""
        [[sweep]]
        model = ["mlp"]
        batch_size = [1, 8]
        device = ["cpu"]
        precision = ["fp32", "bf16", "amp-bf16", "int8-dynamic"]
        prune = ["none", { method = "unstructured", ratio = [0.25, 0.5], scope = "global" },
                 { method = "structured", ratio = 0.5, round_to = 16 }]
        compile = ["eager", "default"]
        mode = ["inference"]
    """))
    assert len(suite.cases) == 2 * 4 * 4 * 2
    prunes = {c.prune for c in suite.cases}
    assert Prune("unstructured", 0.25, "global") in prunes
    assert Prune("structured", 0.5, round_to=16) in prunes


def test_settings_merge_suite_then_block_then_overrides(write_suite):
    path = write_suite("""
        [[sweep]]
        model = "mlp"
        [[sweep]]
        model = "cnn"
        settings = { max_time_s = 2.0, threads = 1 }
    """, fast=False)
    suite = suite_file.load(path, settings_overrides={"min_time_s": 0.1})
    mlp, cnn = suite.cases
    assert (mlp.settings.max_time_s, mlp.settings.min_time_s) == (10.0, 0.1)
    assert (cnn.settings.max_time_s, cnn.settings.threads, cnn.settings.min_time_s) == (2.0, 1, 0.1)


def test_device_override_replaces_the_axis(write_suite):
    path = write_suite('[[sweep]]\nmodel = "mlp"\ndevice = ["cpu"]\n')
    suite = suite_file.load(path, axis_overrides={"device": ["cuda", "cpu"]})
    assert [c.device for c in suite.cases] == ["cuda", "cpu"]


def test_duplicate_cases_across_blocks_are_dropped_once(write_suite):
    suite = suite_file.load(write_suite("""
        [[sweep]]
        model = "mlp"
        depth = [2, 3]
        [[sweep]]
        model = "mlp"
        depth = 2
    """))
    assert len(suite.cases) == 2 and suite.duplicates_dropped == 1


def test_seed_models_take_only_their_own_axes(write_suite):
    suite = suite_file.load(write_suite("""
        [[sweep]]
        model = ["seed-cnn", "text-classifier"]
        batch_size = [4]
        classes = [10]
    """))
    names = [c.name for c in suite.cases]
    assert names == ["seed-cnn-b4-fp32-cpu", "text-classifier-b4-fp32-cpu-c10"]


# ---- ids and names --------------------------------------------------------------------------
def test_case_id_is_a_stable_hash_of_canonical_parameters():
    case = Case(model="mlp", batch_size=32, depth=4, width=512, activation="relu",
                features=256, classes=10)
    # The canonical form, spelled out: if it changes, every stored baseline stops matching,
    # so change it only together with CASE_ID_VERSION.
    canonical = ('{"activation":"relu","batch_size":32,"classes":10,"compile":"eager",'
                 '"depth":4,"device":"cpu","features":256,"mode":"inference","model":"mlp",'
                 '"precision":"fp32","prune":{"method":"none"},"v":1,"width":512}')
    assert case.case_id == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert case.case_id == "683d910aaaa02478"
    assert case.name == "mlp-d4-w512-relu-b32-fp32-cpu"


def test_case_id_ignores_settings_suite_and_sweep_but_not_parameters():
    case = Case(model="mlp", batch_size=32, depth=4, width=512, activation="relu",
                features=256, classes=10)
    same = replace(case, settings=Settings(max_time_s=1.0, seed=3), suite="other", sweep="x")
    assert same.case_id == case.case_id
    for change in ({"width": 256}, {"device": "cuda"}, {"precision": "bf16"},
                   {"prune": Prune("unstructured", 0.5)}, {"mode": "train"},
                   {"model_args": (("k", 1),)}):
        assert replace(case, **change).case_id != case.case_id, change


def test_ids_are_identical_in_a_fresh_interpreter(write_suite):
    """'Identical across runs and machines': no hash randomisation, no dict-order effects."""
    import subprocess

    path = write_suite('[[sweep]]\nmodel = ["mlp", "cnn"]\nwidth = [32, 64]\n')
    here = [c.case_id for c in suite_file.load(path).cases]
    code = ("import sys; from bench.suite import loader as suite_file; "
            "print(' '.join(c.case_id for c in suite_file.load(sys.argv[1]).cases))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                         env={"PYTHONHASHSEED": "12345", "PATH": ""}, check=True)
    assert out.stdout.split() == here


def test_explicit_default_gives_the_same_case(write_suite):
    implicit = suite_file.load(write_suite('[[sweep]]\nmodel = "mlp"\n')).cases[0]
    explicit = suite_file.load(write_suite('[[sweep]]\nmodel = "mlp"\ndepth = 2\nwidth = 256\n'
                                           'features = 256\nactivation = "relu"\n')).cases[0]
    assert implicit.case_id == explicit.case_id and implicit.name == explicit.name


def test_names_get_non_default_parts():
    case = Case(model="mlp", batch_size=8, depth=2, width=64, activation="gelu", features=784,
                classes=10, prune=Prune("unstructured", 0.5), compile="default", mode="train",
                device="cuda:1", precision="bf16")
    assert case.name == "mlp-d2-w64-gelu-b8-bf16-cuda1-f784-unstructured50-compile-default-train"


def test_colliding_names_get_an_id_suffix(write_suite):
    suite = suite_file.load(write_suite("""
        [[sweep]]
        model = "mlp"
        [[sweep]]
        model = "mlp"
        model_args = {}
    """))
    assert len(suite.cases) == 1  # empty model_args is the same case
    with pytest.raises(SpecError, match="takes no model_args"):
        suite_file.load(write_suite('[[sweep]]\nmodel = "mlp"\nmodel_args = { a = 1 }\n'))


def test_case_round_trips_through_its_dict(write_suite):
    for case in suite_file.load(write_suite("""
        [[sweep]]
        model = ["mlp"]
        prune = ["none", { method = "structured", ratio = 0.5 }]
    """)).cases:
        assert Case.from_dict(case.to_dict()) == case
        assert Case.from_dict(case.to_dict()).name == case.name


# ---- bad suites -----------------------------------------------------------------------------
@pytest.mark.parametrize(("body", "expected"), [
    ('[[sweep]]\nmodel = "mlp"\nwidht = [64]\n',
     ['sweep[0].widht', 'unknown key "widht"', 'did you mean "width"']),
    ('[[sweep]]\nmodel = "mlp"\ndepth = ["4"]\n',
     ["sweep[0].depth[0]", "valid integer", 'got "4"']),
    ('[[sweep]]\nmodel = "mlp"\ndepth = [2.5]\n', ["sweep[0].depth[0]", "got 2.5"]),
    ('[[sweep]]\nmodel = "mlp"\ndepth = [true]\n', ["sweep[0].depth[0]", "got true"]),
    ('[[sweep]]\nmodel = "mlp"\nwidth = []\n', ["sweep[0].width", "must not be empty"]),
    ('[[sweep]]\nmodel = "mlpp"\n',
     ['sweep[0].model', 'unknown model "mlpp"', 'did you mean "mlp"', '"transformer"']),
    ('[[sweep]]\nmodel = "mlp"\nactivation = ["relux"]\n',
     ["sweep[0].activation[0]", "'relu', 'gelu', 'silu' or 'tanh'", '"relux"']),
    ('[[sweep]]\nmodel = "mlp"\ndevice = ["gpu"]\n',
     ['sweep[0].device[0]', 'unknown device "gpu"', '"cuda:N"']),
    ('[[sweep]]\nmodel = "mlp"\nprecision = ["fp64"]\n', ["sweep[0].precision[0]", "'bf16'"]),
    ('[[sweep]]\nmodel = "mlp"\nmode = ["training"]\n', ["sweep[0].mode[0]", "'train'"]),
    ('[[sweep]]\nmodel = "mlp"\ncompile = ["jit"]\n', ["sweep[0].compile[0]", "'max-autotune'"]),
    ('[[sweep]]\nmodel = "mlp"\nbatch_size = [0]\n', ["sweep[0].batch_size[0]", "greater than"]),
    ('[[sweep]]\nmodel = "mlp"\ndepth = [0]\n',
     ["sweep[0].depth[0]", "out of range", "between 1 and 4096"]),
    ('[[sweep]]\nmodel = "seed-cnn"\ndepth = [2]\n',
     ['sweep[0].depth', 'model "seed-cnn" does not take `depth`', "fixed architecture"]),
    ('[[sweep]]\nmodel = "text-classifier"\nwidth = [64]\n',
     ['sweep[0].width', "does not take `width`"]),
    ('[[sweep]]\nmodel = ["mlp"]\nimage_size = [32]\n', ["does not take `image_size`"]),
    ('[[sweep]]\nmodel = "mlp"\nprune = [{ method = "unstructured" }]\n',
     ["sweep[0].prune[0].ratio", "needs a ratio"]),
    ('[[sweep]]\nmodel = "mlp"\nprune = [{ method = "unstructured", ratio = 1.5 }]\n',
     ["sweep[0].prune[0].ratio[0]", "outside (0, 1)"]),
    ('[[sweep]]\nmodel = "mlp"\nprune = [{ method = "none", ratio = 0.5 }]\n',
     ["sweep[0].prune[0].ratio", 'takes no ratio']),
    ('[[sweep]]\nmodel = "mlp"\nprune = [{ method = "magnitude", ratio = 0.5 }]\n',
     ["sweep[0].prune[0].method", "'unstructured'"]),
    ('[[sweep]]\nmodel = "mlp"\nprune = [{ method = "unstructured", ratoi = 0.5 }]\n',
     ['sweep[0].prune[0].ratoi', 'did you mean "ratio"']),
    ('[[sweep]]\nmodel = "mlp"\ndevice = ["cpu", "cuda"]\nprecision = ["int8-dynamic"]\n',
     ["sweep[0].precision", "runs only on cpu",
      'exclude = [{ device = "cuda", precision = "int8-dynamic" }]']),
    ('[[sweep]]\nmodel = "mlp"\nprecision = ["tf32"]\n', ["runs only on cuda"]),
    ('[[sweep]]\nmodel = "mlp"\nprecision = ["int8-dynamic"]\nmode = ["train"]\n',
     ["cannot train"]),
    ('[[sweep]]\nmodel = "mlp"\nprune = [{ method = "semi-structured-2:4" }]\n',
     ["sweep[0].prune", "needs a CUDA device"]),
    ('[[sweep]]\nmodel = "mlp"\ncompile = ["reduce-overhead"]\n', ["CUDA graphs"]),
    ('[[sweep]]\nmodel = "mlp"\nexclude = [{ dept = 2 }]\n',
     ['sweep[0].exclude[0].dept', 'did you mean "depth"']),
    ('[[sweep]]\nmodel = "mlp"\nexclude = [{ model = "mlp" }]\n', ["every case", "excluded"]),
    ('[[sweep]]\nmodel = "mlp"\nsettings = { max_time = 2 }\n',
     ['sweep[0].settings.max_time', 'did you mean "max_time_s"']),
    ('[[sweep]]\nmodel = "mlp"\nsettings = { max_time_s = "2" }\n',
     ["sweep[0].settings.max_time_s", "valid number", '"2"']),
    ('[[sweep]]\nmodel = "mlp"\nsettings = { min_time_s = 5.0, max_time_s = 1.0 }\n',
     ["max_time_s = 1 (sweep[0].settings) is below min_time_s = 5",
      "lower min_time_s to 1 or less"]),
    ('[[sweep]]\nmodel = "pkg.mod:3bad"\n', ['"pkg.mod:3bad" is not a factory path']),
    ('', ["sweep", "required key is missing"]),
    ('[[sweep]]\nmodel = "mlp"\n[surprise]\nx = 1\n', ['unknown key "surprise"']),
    ('[[sweep]]\nmodel = "mlp"\ndepth = [2,,]\n', ["not valid TOML", "line 14"]),
])
def test_bad_suites_get_one_clear_error(write_suite, body, expected):
    message = load_error(write_suite, body)
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert "Traceback" not in message


def test_header_errors_name_the_key(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[suite]\nnme = "x"\n[[sweep]]\nmodel = "mlp"\n')
    with pytest.raises(SpecError) as info:
        suite_file.load(path)
    assert "suite.name: required key is missing" in str(info.value)
    assert 'suite.nme: unknown key "nme" (did you mean "name"?)' in str(info.value)


def test_unknown_suite_setting_is_named(write_suite):
    path = write_suite('[settings]\nmax_time = 2\n[[sweep]]\nmodel = "mlp"\n', fast=False)
    with pytest.raises(SpecError, match=r'settings.max_time: unknown setting "max_time" '
                                        r'\(did you mean "max_time_s"\?\)'):
        suite_file.load(path)


def test_missing_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        suite_file.load(tmp_path / "nope.toml")


def test_suite_file_literals_match_the_axes_vocabulary():
    from typing import get_args

    from bench.suite import axes

    assert get_args(suite_file.Activation) == axes.ACTIVATIONS
    assert get_args(suite_file.Precision) == tuple(axes.PRECISIONS)
    assert get_args(suite_file.CompileMode) == axes.COMPILE_MODES
    assert get_args(suite_file.Mode) == axes.MODES
    assert get_args(suite_file.PruneMethod) == axes.PRUNE_METHODS
