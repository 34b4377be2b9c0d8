"""Train the σ-conditioned score network (basis_jax/priors/score_unet.py) on CIFAR-10.

The prior of configs/cifar_unet.py and configs/cifar_color_unet.py. Its settings, and why
(docs/score_unet_cifar10.md has the measurements):
- widths 32/64/128 at 32 → 16 → 8, one residual block per resolution each way (1.61M
  params): twice MNIST's width at 8×8, chosen by measured training throughput on this
  2-core CPU (0.5-0.6 steps/s at batch 64 over two CPU devices; 64/128/128 ran 0.17, and
  a fourth 4×4 resolution would not fit the 25 MB budget of the committed training state).
- σ log-uniform on [0.005, 54]: 54 ≥ 53.17, the largest pairwise L2 distance between the
  50,000 training images in [0, 1] (NCSNv2's rule for σ_max; measured on the JPEG-lossy
  copy this project trains on); 0.005 lies below the separation ladder's smallest σ (0.01).
- random horizontal flips; Adam lr 1e-3 with a 500-step warm-up, global-norm clip 1,
  batch 64, EMA 0.999 (as the MNIST prior).
- The last 2,000 training images are held out: held-out DSM loss per σ band every 1,000
  steps (raw and EMA) in metrics.jsonl; separation settings are chosen on mixtures of
  held-out images, never on the test pairs that are reported.

Data: the 50,000 training images; the project trains on a JPEG-lossy copy (quality 75,
an .npz with `train_jpeg_data`/`train_jpeg_offsets`/`y_train`, see basis_jax/files/data.py), and
the python batches or an exact .npz work the same way.

  python -m experiments.train --config=configs/train_score_unet_cifar10.py \
      --config.data.path=/path/to/cifar10.npz --workdir=runs/train_cifar10 \
      [--config.init_weights=training/score_unet_cifar10/weights.npz]

Re-running resumes from WORKDIR/checkpoints; WORKDIR/weights.npz is the complete compact
training state (params, EMA, Adam moments; deflated, ~24 MB).
"""

from configs import train_score_unet_mnist


def get_config(variant: str = "default"):
  """':large' is the wider network of the one-call device script (studies/gpu/
  benchmark_and_train_cifar10.sh): widths 48/96/192, 3.6M parameters, 2.25× the shipped
  prior, 7.2 MB in 16 bits (the shipping budget's room); trained from scratch there."""
  if variant not in ("default", "large"):
    raise ValueError(f"Unknown variant {variant!r}; use :default or :large.")
  config = train_score_unet_mnist.get_config()
  config.model.dataset = "cifar10"
  config.model.widths = (32, 64, 128)
  config.data.source = "cifar10"
  config.sigmas.sigma_max = 54.0
  config.training.random_flip = True
  config.num_steps = 300_000
  config.heldout.update(num_images=2000, eval_images=256)
  # Unconditional grids start from σ_max (CIFAR-10 needs the whole ladder to sample from
  # noise, unlike a separation, which starts at σ = 1); 100 levels × 5 steps.
  config.sampling.update(every=10_000, num_samples=36, steps_per_level=5, step_lr=1e-5,
                         sigma_max=54.0, sigma_min=0.01, num_levels=100)
  if variant == "large":
    config.model.widths = (48, 96, 192)
  return config
