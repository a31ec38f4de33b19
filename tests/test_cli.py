"""Tests for lamina.cli: the ``lamina`` command (summary, predict, export, serve) and ``python -m lamina``."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lamina import Input, Model, Sequential
from lamina.cli import main
from lamina.layers import Concatenate, Dense

ROOT = Path(__file__).resolve().parents[1]
HAS_ONNX = all(importlib.util.find_spec(n) for n in ("onnx", "onnxscript", "onnxruntime"))


@pytest.fixture
def saved(tmp_path):
    model = Sequential([Input((4,), name="x"), Dense(5, activation="relu", name="hidden"), Dense(2, name="y")])
    path = tmp_path / "model.lamina"
    model.save(path)
    return model, path


@pytest.fixture
def saved_two_outputs(tmp_path):
    a, b = Input((2,), name="a"), Input((3,), name="b")
    hidden = Dense(4)(Concatenate()([a, b]))
    model = Model({"a": a, "b": b}, {"score": Dense(1, name="score")(hidden), "probs": Dense(2, name="p")(hidden)})
    path = tmp_path / "two.lamina"
    model.save(path)
    return model, path


def _error_line(capsys):
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return captured.err.strip()


# ---------------------------------------------------------------------------------- help
def test_cli_help_lists_the_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("summary", "predict", "export", "serve"):
        assert command in out


@pytest.mark.parametrize("command, option", [("serve", "--max-body-bytes"), ("predict", "--batch-size"),
                                             ("export", "--format"), ("summary", "MODEL")])
def test_cli_subcommand_help(capsys, command, option):
    assert main([command, "--help"]) == 0
    assert option in capsys.readouterr().out


def test_cli_python_dash_m_lamina_help():
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "lamina", "--help"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: lamina")
    assert "serve" in result.stdout


def test_cli_version(capsys):
    import lamina

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"lamina {lamina.__version__}"


@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required: COMMAND"),
    (["train", "m.lamina"], "invalid choice: 'train'"),
    (["predict", "m.lamina", "in.npy"], "the following arguments are required: -o/--output"),
    (["predict", "m.lamina", "in.npy", "-o", "o.npy", "--batch-size", "0"], "expected a positive integer"),
    (["serve", "m.lamina", "--max-delay-ms", "-1"], "expected a number >= 0"),
])
def test_cli_usage_errors_exit_2(capsys, argv, message):
    assert main(argv) == 2
    assert message in _error_line(capsys)


# ---------------------------------------------------------------------------------- summary
def test_cli_summary_prints_the_table(saved, capsys):
    _, path = saved
    assert main(["summary", str(path)]) == 0
    out = capsys.readouterr().out
    assert "hidden (Dense)" in out and "Total params: 37" in out


def test_cli_summary_of_an_exported_file(saved, tmp_path, capsys):
    _, path = saved
    assert main(["export", str(path), str(tmp_path / "m.pt2")]) == 0
    capsys.readouterr()
    assert main(["summary", str(tmp_path / "m.pt2")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "m (torch)"
    assert "x" in out and "(None, 4)" in out and "(None, 2)" in out


# ---------------------------------------------------------------------------------- predict
@pytest.mark.parametrize("batch_size", ["2", "32"])
def test_cli_predict_npy_matches_model_predict(saved, tmp_path, capsys, batch_size):
    model, path = saved
    x = np.random.normal(size=(7, 4)).astype("float32")
    np.save(tmp_path / "in.npy", x)
    argv = ["predict", str(path), str(tmp_path / "in.npy"), "-o", str(tmp_path / "out.npy"), "--batch-size", batch_size]
    assert main(argv) == 0
    assert "7 rows" in capsys.readouterr().out
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), model.predict(x, verbose=0), atol=1e-6)


def test_cli_predict_npz_named_inputs_and_outputs(saved_two_outputs, tmp_path):
    model, path = saved_two_outputs
    data = {"a": np.random.normal(size=(5, 2)), "b": np.random.normal(size=(5, 3))}  # float64: cast
    np.savez(tmp_path / "in.npz", **data)
    assert main(["predict", str(path), str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npz")]) == 0
    expected = model.predict({k: v.astype("float32") for k, v in data.items()}, verbose=0)
    with np.load(tmp_path / "out.npz") as out:
        assert sorted(out.files) == ["probs", "score"]
        np.testing.assert_allclose(out["score"], expected["score"], atol=1e-6)
        np.testing.assert_allclose(out["probs"], expected["probs"], atol=1e-6)


def test_cli_predict_with_a_pt2_file(saved, tmp_path):
    model, path = saved
    assert main(["export", str(path), str(tmp_path / "m.pt2")]) == 0
    x = np.random.normal(size=(9, 4)).astype("float32")
    np.save(tmp_path / "in.npy", x)
    argv = ["predict", str(tmp_path / "m.pt2"), str(tmp_path / "in.npy"), "-o", str(tmp_path / "out.npy"),
            "--batch-size", "4"]
    assert main(argv) == 0
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), model.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize("setup, message", [
    ("missing_model", "no such file"),
    ("bad_extension", "unsupported model file"),
    ("corrupt_model", "is not a readable zip archive"),
    ("missing_input", "no such file"),
    ("pickled_input", "cannot read"),
    ("wrong_shape", "expects shape (None, 4)"),
    ("text_input", "unsupported input file"),
    ("bad_output", "unsupported output file"),
])
def test_cli_predict_errors_exit_2_with_a_message(saved, tmp_path, capsys, setup, message):
    _, path = saved
    x = tmp_path / "in.npy"
    np.save(x, np.zeros((3, 4), "float32"))
    model, out = str(path), str(tmp_path / "out.npy")
    if setup == "missing_model":
        model = str(tmp_path / "absent.lamina")
    elif setup == "bad_extension":
        model = str(tmp_path / "model.h5")
    elif setup == "corrupt_model":
        model = str(tmp_path / "corrupt.lamina")
        Path(model).write_bytes(b"garbage")
    elif setup == "missing_input":
        x = tmp_path / "absent.npy"
    elif setup == "pickled_input":
        np.save(x, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif setup == "wrong_shape":
        np.save(x, np.zeros((3, 5), "float32"))
    elif setup == "text_input":
        x = tmp_path / "in.csv"
        x.write_text("1,2,3,4\n")
    elif setup == "bad_output":
        out = str(tmp_path / "out.csv")
    assert main(["predict", model, str(x), "-o", out]) == 2
    line = _error_line(capsys)
    assert line.startswith("lamina predict: error:") and message in line


def test_cli_predict_several_outputs_need_npz(saved_two_outputs, tmp_path, capsys):
    _, path = saved_two_outputs
    np.savez(tmp_path / "in.npz", a=np.zeros((2, 2), "float32"), b=np.zeros((2, 3), "float32"))
    assert main(["predict", str(path), str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npy")]) == 2
    assert "write them to a .npz file" in _error_line(capsys)


def test_cli_predict_npz_missing_input_name(saved_two_outputs, tmp_path, capsys):
    _, path = saved_two_outputs
    np.savez(tmp_path / "in.npz", a=np.zeros((2, 2), "float32"))
    assert main(["predict", str(path), str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npz")]) == 2
    assert "missing ['b']" in _error_line(capsys)


def test_cli_predict_keras_file_matches_keras(tmp_path, keras):
    reference = keras.Sequential([keras.Input((4,), name="x"), keras.layers.Dense(6, activation="relu"),
                                  keras.layers.Dense(3, activation="softmax", name="probs")])
    reference.save(tmp_path / "model.keras")
    x = np.random.normal(size=(5, 4)).astype("float32")
    np.save(tmp_path / "in.npy", x)
    argv = ["predict", str(tmp_path / "model.keras"), str(tmp_path / "in.npy"), "-o", str(tmp_path / "out.npy")]
    assert main(argv) == 0
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), reference.predict(x, verbose=0), atol=1e-6)


# ---------------------------------------------------------------------------------- export
@pytest.mark.skipif(not HAS_ONNX, reason="onnx, onnxscript and onnxruntime are needed")
def test_cli_export_onnx_runs_in_onnxruntime(saved, tmp_path, capsys):
    import onnxruntime

    model, path = saved
    assert main(["export", str(path), str(tmp_path / "m.onnx")]) == 0
    assert "Saved artifact" in capsys.readouterr().out
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.normal(size=(3, 4)).astype("float32")
    np.testing.assert_allclose(session.run(["y"], {"x": x})[0], model.predict(x, verbose=0), atol=1e-5)


def test_cli_export_pt2_with_explicit_format(saved, tmp_path):
    model, path = saved
    assert main(["export", str(path), str(tmp_path / "model.pt2"), "--format", "torch"]) == 0
    x = torch.randn(2, 4)
    y = torch.export.load(tmp_path / "model.pt2").module()(x)
    np.testing.assert_allclose(y.detach().numpy(), model.predict(x.numpy(), verbose=0), atol=1e-5)


@pytest.mark.parametrize("args, message", [
    (["{model}", "{tmp}/m.bin"], "cannot tell the export format"),
    (["{model}", "{tmp}/m.pt2", "--opset", "17"], "--opset applies to ONNX exports only"),
    (["{tmp}/m.onnx", "{tmp}/again.pt2"], "unsupported model file"),
    (["{tmp}/absent.lamina", "{tmp}/m.pt2"], "no such file"),
])
def test_cli_export_errors_exit_2(saved, tmp_path, capsys, args, message):
    _, path = saved
    argv = ["export"] + [a.format(model=path, tmp=tmp_path) for a in args]
    assert main(argv) == 2
    assert message in _error_line(capsys)


# ---------------------------------------------------------------------------------- serve
@pytest.mark.parametrize("name, message", [("absent.lamina", "no such file"), ("model.txt", "unsupported model file")])
def test_cli_serve_bad_model_exits_2_without_starting(tmp_path, capsys, name, message):
    assert main(["serve", str(tmp_path / name), "--port", "1"]) == 2
    assert message in _error_line(capsys)


def test_cli_serve_missing_extra_names_it(saved, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    _, path = saved
    assert main(["serve", str(path)]) == 2
    assert 'pip install "lamina[serve]"' in _error_line(capsys)


def test_cli_serve_passes_options_through(saved, monkeypatch):
    import lamina.serving

    seen = {}
    monkeypatch.setattr(lamina.serving, "serve", lambda path, **kwargs: seen.update(path=path, **kwargs))
    _, path = saved
    argv = ["serve", str(path), "--host", "0.0.0.0", "--port", "9001", "--max-batch-size", "8", "--max-rows", "10",
            "--max-body-bytes", "1000", "--max-delay-ms", "0.5"]
    assert main(argv) == 0
    assert seen == {"path": str(path), "host": "0.0.0.0", "port": 9001, "max_batch_size": 8, "max_rows": 10,
                    "max_body_bytes": 1000, "max_delay_ms": 0.5, "log_level": "info", "access_log": False}
