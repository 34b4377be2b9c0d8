"""basis-jax: BASIS source separation (Jayaram & Thickstun, ICML 2020) on JAX/Flax."""

import setuptools

setuptools.setup(
    name="basis-jax",
    version="0.1.0",
    description="Source separation with deep generative priors (BASIS) on JAX/Flax.",
    license="Apache-2.0",
    python_requires=">=3.11",
    # benchmarks/ (measuring tools) installs beside the library for experiments.benchmark;
    # basis_jax never imports it.
    packages=setuptools.find_packages(include=["basis_jax", "basis_jax.*", "experiments",
                                               "configs", "convert_weights", "benchmarks"]),
    package_data={"basis_jax": ["weights/*"]},
    install_requires=[
        # jax 0.10.x is the newest on Python 3.11, 0.11.x on 3.12; both are supported.
        "jax>=0.6",
        "flax>=0.10",
        "optax",
        "orbax-checkpoint",
        "numpy",
        "absl-py",
        "ml_collections",
        "clu",
        "pillow",
        # Every run writes its figures (separations.png, psnr_histogram.png) with it.
        "matplotlib",
        "tensorflow-datasets",
    ],
    extras_require={
        # pytest-xdist: the suite runs on one worker per core (pytest.ini). No torch here: a
        # plain `pip install torch` can pull a multi-GB CUDA build. The PyTorch parity tests
        # skip (with the reason) without it and committed golden fixtures stand in.
        # ruff: tests/test_lint.py runs `ruff check` (ruff.toml) over the code.
        "test": ["pytest", "pytest-xdist", "chex", "ruff"],
        # PyTorch is only needed to convert the published checkpoints and for the
        # parity tests; converted checkpoints load without it. Install a CPU build yourself
        # where the default wheel is CUDA's (README, Install and test).
        "torch": ["torch"],
        # Preparing a tfds dataset (as opposed to reading a prepared one) needs TensorFlow.
        "prepare": ["tensorflow"],
        "tf": ["tensorflow-cpu", "tf_slim"],
    },
)
