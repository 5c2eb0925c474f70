"""Test configuration: float64 on, strict dtype promotion, warnings from the package are errors.

float64 makes comparisons with torch.optim and finite differences meaningful at
rtol 1e-9; strict promotion proves the library never relies on implicit promotion.
Tests that need float32/bfloat16 ask for the dtype explicitly.
"""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
