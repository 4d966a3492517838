"""Certificates: which model-A neurons provably fire at ``t_max − ReLU(z)``.

For ``u = t_min(n) − t ∈ [0, B_in]`` and inputs ``x_j = t_min(n) − t_j ∈ [0, B_in]`` (docs/method.md
§3)::

    V_i(t) − theta_i = G_i · f_i(u),
    f_i(u) = b_i + Σ_j W_ij (x_j − u)⁺ − (1 − S_i) u − B
           = (z_i − B) − u + Σ_j W_ij (u − x_j)⁺            [(x − u)⁺ = x − u + (u − x)⁺]

A neuron with ``f_i < 0`` on ``[0, B_in]`` does not fire before its window, so it fires at
``t_max − ReLU(z_i)``. Three proofs of that, from cheap to less cheap:

* :func:`certify_drive` — the drive certificate (docs/method.md §7) ``b + Σ_j W⁺_ij x_j < B`` (one
  float32 convolution/GEMM with the positive weights). On trained networks it certifies
  (nearly) every neuron.
* :func:`certify_grid` — for layers where the first bound misses many neurons (e.g. random
  weights): ``f`` evaluated exactly at a few grid points ``0 = c_0 < c_1 < … < c_G <
  c_{G+1} = B_in`` (one float32 convolution each) plus one convolution that bounds how far
  ``f`` can rise between grid points. On ``[c_k, c_{k+1}]`` every term of ``f`` is linear
  except those whose input ``x_j`` lies inside the interval: excitatory ones (``W > 0``) are
  convex, so below their chord; inhibitory ones are concave and exceed their chord by at most
  the "tent" ``|W⁻_ij| (x_j − c_k)(c_{k+1} − x_j)/(c_{k+1} − c_k)``. Hence::

      max_[0, B_in] f_i  ≤  max_k f_i(c_k) + D_i,    D_i = Σ_j |W⁻_ij| T(x_j),

  with ``T`` the tent of the grid interval containing ``x_j``, ``f_i(c_k) = z_i − B − c_k +
  Σ_j W_ij (c_k − x_j)⁺`` and ``f_i(B_in) = b_i − B − (1 − S_i) B_in``. The sums are
  convolutions over the output channels that hold a needed neuron, or — when the needed
  neurons read few input patches — the same sums over their gathered patches (one matrix
  product per map).
* :func:`certify_late` — inputs arriving after ``t_min`` (perturbations such as jitter).

Neurons that no certificate covers get the exact first-crossing walk
(:mod:`onespike.simulation.engines.crossing`). The float32 sums carry rigorous rounding margins (the
standard bound ``|fl(Σ a_j) − Σ a_j| ≤ γ_K Σ |a_j|``, ``γ_K ≈ K·2⁻²⁴``, valid for any
summation order). They assume IEEE float32 arithmetic: where the backend may round float32
matmuls/convolutions more coarsely (TF32 or bf16, e.g. cuDNN's default TF32 on GPUs), the same
sums run in float64 instead (:func:`sum_dtype`) — sound, since float64 rounds less — and no
process-wide backend flag is ever changed.

One module per proof or form: :mod:`.drive`, :mod:`.late`, :mod:`.grid` (the entry point and
the choice of form) with :mod:`.grid_f32`, :mod:`.grid_bf16` and :mod:`.grid_patches` (the
three forms of its sums), :mod:`.grid_forms` (what the forms share: ``f`` at a grid point and
the verdict), :mod:`.reads` (where the convolution form reads its sums: whole maps or only the
needed neurons), :mod:`.tents` and :mod:`.points` (its tents and grid points); :mod:`.inputs`
(the inputs' low-precision copies, shared by the proofs of one step) and :mod:`.precision`
(rounding facts). The public names are re-exported here.
"""

from onespike.simulation.engines.bounds.drive import (
    BF16_DRIVE,
    BF16_EMULATED,
    bf16_drive_available,
    certify_drive,
    certify_model_a,
)
from onespike.simulation.engines.bounds.grid import certify_grid
from onespike.simulation.engines.bounds.inputs import InputMaps, input_range
from onespike.simulation.engines.bounds.late import certify_late
from onespike.simulation.engines.bounds.points import GRID_QUANTILES, grid_points, grid_stages
from onespike.simulation.engines.bounds.precision import float32_is_ieee, sum_dtype

__all__ = [
    "BF16_DRIVE",
    "BF16_EMULATED",
    "GRID_QUANTILES",
    "InputMaps",
    "bf16_drive_available",
    "certify_drive",
    "certify_grid",
    "certify_late",
    "certify_model_a",
    "float32_is_ieee",
    "grid_points",
    "grid_stages",
    "input_range",
    "sum_dtype",
]
