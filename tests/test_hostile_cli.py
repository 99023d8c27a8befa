"""Hostile inputs at the command line: quiet start-up, sizes beyond the machine, fields named in errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cli_errors import one_line_error
from yt_bias import cli

# TensorFlow's C++ start-up lines (CUDA stub, oneDNN note, CPU feature guard, cuInit).
START_UP_LINES = ("cudart_stub", "cpu_feature_guard", "cuda_platform", "cuInit", "oneDNN custom operations")


def test_commands_print_no_tensorflow_start_up_lines():
    """``yt-bias --help``, then TensorFlow running an op (as every command does), in a fresh process with no TF_CPP_MIN_LOG_LEVEL."""
    script = (
        "from yt_bias.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "import tensorflow as tf\n"
        "print(float(tf.reduce_sum(tf.ones(3))))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "usage: yt-bias" in done.stdout and "3.0" in done.stdout
    assert not [line for line in done.stderr.splitlines() if any(s in line for s in START_UP_LINES)], done.stderr


def test_help_loads_no_tensorflow():
    """``yt-bias --help`` (and a subcommand's help) in a fresh process: registering the commands imports no TensorFlow.

    The console script ``yt-bias`` is ``yt_bias.cli:main`` (setup.py); the commands import what
    they run inside their run functions, and the choices they list come from TensorFlow-free modules.
    """
    script = (
        "import sys\n"
        "from yt_bias.cli import main\n"
        "for argv in (['--help'], ['train', '--help'], ['data', 'download', '--help'], ['experiment', 'strategies', '--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "print('tensorflow loaded:', 'tensorflow' in sys.modules, 'keras loaded:', 'keras' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "usage: yt-bias [-h]" in done.stdout and "usage: yt-bias train" in done.stdout, done.stdout[-2000:]
    assert "gradual" in done.stdout and "ml-100k" in done.stdout and "candidates-listwise" in done.stdout  # the listed choices
    assert "tensorflow loaded: False keras loaded: False" in done.stdout, done.stdout[-500:]


def test_a_command_runs_with_keras_2_selected_before_its_first_tensorflow_import(tmp_path):
    """Help loads no TensorFlow, so a command selects Keras 2 itself: the report's version stamp imports tensorflow first."""
    script = (
        "import sys\n"
        "from yt_bias.cli import main\n"
        f"code = main(['report', '--out', {str(tmp_path / 'report')!r}, '--only', 'scale'])\n"
        "import tensorflow as tf\n"
        "print('exit', code, 'keras of tf:', tf.keras.__name__.split('.')[0])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "exit 0 keras of tf: tf_keras" in done.stdout, done.stdout[-1000:]


def test_quiet_only_when_the_user_did_not_ask(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    assert not cli.quiet_tensorflow(["--debug", "train"]) and "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    assert not cli.quiet_tensorflow(["train"]) and os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    assert cli.quiet_tensorflow(["train"]) and os.environ["TF_CPP_MIN_LOG_LEVEL"] == cli.QUIET_TF_LOG_LEVEL


@pytest.mark.parametrize(
    "argv,needles",
    [
        (["--items", "1000000000000", "--interactions", "100"], ["num_items must be at most", "1,000,000,000,000"]),
        (["--items", "50", "--interactions", "100", "--seed", "-1"], ["seed must be an integer >= 0", "-1"]),
        (["--items", "1", "--interactions", "100"], ["num_items must be an integer >= 2", "1"]),
    ],
)
def test_generate_sizes_and_seed_name_the_field(tmp_path, capsys, argv, needles):
    out = tmp_path / "d"
    assert cli.main(["data", "generate", "--out", str(out), *argv]) == 2
    one_line_error(capsys, *needles)
    assert not out.exists() and os.listdir(tmp_path) == []


def test_memory_error_is_one_line(capsys, monkeypatch):
    from yt_bias.cli import data as data_cli

    def exhausted(args):
        raise MemoryError()

    monkeypatch.setattr(data_cli, "run_generate", exhausted)
    assert cli.main(["data", "generate", "--out", "x", "--items", "50", "--interactions", "100"]) == 2
    one_line_error(capsys, "out of memory")
