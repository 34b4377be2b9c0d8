"""Train the compact continuous-σ score network (basis_jax/priors/score_unet.py) on MNIST.

This is the prior the package ships (basis_jax/weights/score_unet_mnist.npz, the default
of configs/mnist_unet.py). Its settings, and why (docs/score_unet.md has the measurements):
- widths 32/64/64 at 28 → 14 → 7, one residual block per resolution each way (0.70M
  params, 0.267 GFLOP per forward): the candidate that trains fastest per unit of quality
  on a 2-core CPU among those measured (`python -m studies.score_unet_throughput`).
- σ log-uniform on [0.005, 17]: 17 ≈ the largest pairwise L2 distance between MNIST
  training images (16.88, NCSNv2's rule for σ_max); 0.005 lies below the smallest σ of the
  released separation ladder (0.01), so every σ a separation queries was trained on.
- Adam lr 1e-3 with a 500-step warm-up and global-norm clip 1, batch 64, EMA 0.999.
- The last 2,000 training images are held out: held-out DSM loss per σ band every 1,000
  steps (raw and EMA) in metrics.jsonl, and separation settings are chosen on mixtures of
  held-out images, never on the test pairs that are reported.

  python -m experiments.train --config=configs/train_score_unet_mnist.py \
      --config.data.path=/path/to/mnist --workdir=runs/train_score_unet

Shipping a model (a warm-up/stable/decay schedule): the committed training state stays on
the constant-lr branch, and the shipped weights come from a cool-down branched off it, the
lr falling linearly to 5 % over the last 5,000 steps (docs/score_unet.md):

  python -m experiments.train --config=configs/train_score_unet_mnist.py \
      --config.data.path=/path/to/mnist --workdir=runs/cool \
      --config.init_weights=STABLE_STATE.npz --config.optim.decay_start=S \
      --config.optim.decay_steps=5000 --config.optim.final_lr_factor=0.05 \
      --config.num_steps=S+5000

Re-running resumes from WORKDIR/checkpoints. WORKDIR/weights.npz holds params, EMA and
(compact_opt_state) the Adam moments: a complete training state of ~8 MB, from which
`--config.init_weights=weights.npz` resumes exactly on another machine.
"""

import ml_collections

from configs import train_ncsn_mnist


def get_config():
  config = train_ncsn_mnist.base_config()
  config.model = ml_collections.ConfigDict({
      "name": "score_unet", "dataset": "mnist", "widths": (32, 64, 64), "embed_dim": 64,
      "groups": 8, "dtype": ml_collections.config_dict.placeholder(str)})
  config.sigmas = ml_collections.ConfigDict({"sigma_max": 17.0, "sigma_min": 0.005,
                                             "num_bands": 10})
  config.training.batch_size = 64
  config.optim.update(lr=1e-3, warmup_steps=500, grad_clip=1.0)
  config.ema_rate = 0.999
  config.num_steps = 100_000
  config.log_every = 100
  config.checkpoint_every = 500
  config.compact_opt_state = True
  config.heldout.update(num_images=2000, eval_images=512)
  config.heldout_every = 1000
  # Sample grids: plain annealed Langevin on the released separation ladder (σ 1 → 0.01).
  config.sampling = ml_collections.ConfigDict({
      "every": 5000, "num_samples": 64, "steps_per_level": 50, "step_lr": 2e-5,
      "sigma_max": 1.0, "sigma_min": 0.01, "num_levels": 10})
  return config
