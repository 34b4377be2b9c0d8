"""The prior the package ships separates real MNIST mixtures (held-out training images), as
its float32 weights did before 16-bit storage."""

import json


from basis_jax.sampling import separation
from basis_jax.priors import score_unet
from configs import mnist_unet
from tests import stored_precision

# Measured with the shipped weights on these 8 held-out mixtures at T=20 (jax 0.10.2 with 8
# CPU devices): 25.0 dB (step 6000, soft constraint), 25.34 dB (step 11000, soft), 26.17 dB
# (step 19000, the config's hard constraint), 31.77 dB (step 31000, the cool-down branch)
# (Average baseline 14.8). Langevin chains
# amplify float rounding, so another jax version may flip a mixture (per-mixture std
# ≈ 10 dB, i.e. ~1.2 dB of the mean per flip): the bound leaves room for a few.
MIN_PSNR_DB = 20.0
# The same run with the float32 weights the 16-bit file replaced (2026-12-07, Python 3.11,
# jax 0.10.2; git show ccddc75:basis_jax/weights/score_unet_mnist.npz), per mixture. The
# 16-bit file gave each to within 0.006 dB.
FLOAT32_PSNR = (33.0582, 37.4649, 39.1294, 31.1518, 38.8358, 26.4321, 29.1572, 18.9048)


def test_shipped_weights_exist_and_separate_heldout_mixtures(tmp_path, shared_data):
  assert score_unet.shipped_weights("mnist") is not None, "the package ships no MNIST prior"
  config = mnist_unet.get_config("heldout,single")  # One chain, as the figures above.
  config.data.path = str(shared_data / "mnist")
  config.num_mixtures = config.batch_size = 8
  config.schedule.steps_per_level = 20
  separation.run(config, str(tmp_path))
  with open(tmp_path / "metrics.json") as f:
    result = json.load(f)
  psnr, baseline = result["psnr"]["mean"], result["average_baseline_psnr"]["mean"]
  print(f"shipped prior, 8 held-out mixtures, T=20: {psnr:.2f} dB (Average {baseline:.2f})")
  assert psnr > MIN_PSNR_DB and psnr > baseline + 5.0
  # 16-bit storage: most chains end where float32's did, and the mean stays.
  stored_precision.assert_psnr_kept(tmp_path, FLOAT32_PSNR)
