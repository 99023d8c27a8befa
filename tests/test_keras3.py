"""yt_bias.keras3 in fresh Keras 3 processes: the JAX backend, and what importing the package selects.

Keras 3 reads its backend once, at the first ``import keras``, and the tf-keras tests load
TensorFlow with Keras 2 into this process; so the JAX checks run tests/test_keras3_backend.py in
a subprocess with ``KERAS_BACKEND=jax`` (the plain run covers Keras 3's TensorFlow backend), and
with ``KERAS_BACKEND=torch`` where PyTorch is installed (it is not a dependency of the package).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code_or_args, backend: str, timeout: int = 600, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "KERAS_BACKEND")}
    env.update(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu", **(extra_env or {}))
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def _stdout(code: str, backend: str) -> str:
    """What ``code`` prints in a fresh process on ``backend``; asserts that it exits cleanly."""
    result = _run(code, backend)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


NO_TORCH = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                              reason="PyTorch is not installed (pip install torch)")


@pytest.mark.parametrize("backend, timeout", [("jax", 600), pytest.param("torch", 1500, marks=NO_TORCH)])
def test_the_keras3_checks_pass_on_the_backend(backend, timeout):
    pytest_args = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "--noconftest", "tests/test_keras3_backend.py"]
    result = _run(pytest_args, backend, timeout=timeout)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout


def test_importing_the_package_selects_no_keras_and_keras3_on_jax_imports_no_tensorflow():
    code = (
        "import os, sys\n"
        "import yt_bias\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, sorted(sys.modules)\n"
        "assert 'TF_USE_LEGACY_KERAS' not in os.environ\n"
        "import yt_bias.keras3, yt_bias.config, keras\n"
        "assert keras.backend.backend() == 'jax'\n"
        "print('tensorflow' in sys.modules, 'yt_bias._keras' in sys.modules)\n"
    )
    assert _stdout(code, "jax").split() == ["False", "False"]


def test_a_tf_keras_part_in_a_keras3_tensorflow_process_raises_a_clear_error():
    code = (
        "import yt_bias.keras3, keras, tensorflow as tf\n"
        "assert keras.backend.backend() == 'tensorflow' and not tf.keras.__name__.startswith('tf_keras')\n"
        "try:\n"
        "    yt_bias.StreamingFrequencyEstimator\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    stdout = _stdout(code, "tensorflow")
    assert "yt_bias's tf-keras parts need Keras 2 (tf-keras)" in stdout
    assert "use yt_bias.keras3 instead" in stdout


def test_data_parallel_on_jax_updates_the_estimator_once_per_global_step(tmp_path):
    """Under DataParallel the train step is one SPMD program over the global batch: the replicated
    estimator sees every row of it once per step, and training equals one device's on the same batches."""
    result = _run(["tests/keras3_data_parallel.py"], "jax", extra_env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["devices"] == 2 and out["batch_axes"][0] == "batch"
    single, parallel = out["single"], out["data_parallel"]
    assert all(p == {"devices": 2, "replicated": True} for p in parallel["placement"])
    assert all(p["devices"] == 1 for p in single["placement"])
    assert int(parallel["arrays"]["step"]) == 20  # 2 epochs x 10 global batches, not once per replica
    for name in single["arrays"]:
        np.testing.assert_allclose(parallel["arrays"][name], single["arrays"][name], rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(parallel["loss"], single["loss"], rtol=1e-5)
    np.testing.assert_allclose(parallel["item_embeddings"], single["item_embeddings"], rtol=1e-4, atol=1e-6)
