"""``onespike bench``: speed and memory of the simulation engines against the ReLU forward.

For every model, dtype and batch size the benchmark measures the per-image wall time and the
peak memory of

* ``relu``: the plain PyTorch forward of the original model (``model.to(dtype)`` under
  ``torch.no_grad()``) — the reference every ratio is taken against,
* ``closed``: ``snn.simulate(x, engine="closed", record=False, certify=False)``,
* ``closed-cert``: ``snn.simulate(x, engine="closed", record=False)`` (``certify=True``),
* ``closed-cert-default``: ``snn.simulate(x, engine="closed")`` (``record=True``, the
  default chunking),
* ``event``: ``snn.simulate(x, engine="event", record=False)`` (exact dynamics),
* ``event-default``: ``snn.simulate(x)`` — the exact dynamics with every default
  (``record=True``, the default chunking),
* ``call``: ``snn(x)`` (``SpikingNetwork.forward``: the output only; its certificate, for
  the checks, comes from ``snn.simulate(x, engine="event", record=False)`` run apart),
* ``clock``: ``snn.simulate(x, engine="clock", record=False, steps=K)`` (time-stepped,
  ``K`` ticks per window; reported "n/a" when the engine is missing or fails),

(:data:`~onespike.apps.bench.measure.CALLS`; the report's column headings are these calls),
together with the conversion time (calibration included), the fraction of neurons whose first
crossing needed the exact computation (``certificate.checked / neurons``) and the output error
against the float64 ReLU logits.

How each configuration (model, dtype, batch, engine) is measured:

1. **First run, in a fresh process** (forked from a clean fork server that has only imported
   ``torch`` and ``onespike``): the network (or the ReLU model) and the inputs are loaded, one
   cheap warm-up call on a single sample initialises the libraries, freed heap memory is
   returned to the system (``malloc_trim``), then the peak resident set size is reset
   (``/proc/self/clear_refs``; psutil sampling where that is not available) and the
   configuration is run once. Its peak memory minus the resident size just before the run
   is the configuration's **peak memory**; its outputs give the certificate and the error.
   The same is then measured for a second, identical run in that process (**steady peak
   memory**: without the first call's one-time costs, e.g. the certificates' weight copies,
   which the network caches for its later calls).
2. **Timing, in the benchmark process**: the engines of one (model, dtype, batch) are warmed up
   and then timed round-robin (so that load from other jobs hits them alike), up to
   ``repeats`` times each and no longer than ``budget`` seconds per engine; the **per-image
   time** is the median run time divided by the batch size. Runs shorter than 50 ms are
   repeated inside one timing sample. A configuration whose first run already took longer
   than ``budget`` is not repeated: its single fresh-process run is reported (``single``).
3. **Skipping**: a configuration whose run time, extrapolated linearly from the same engine at
   the next smaller batch, exceeds ``max_run`` seconds is skipped and reported with the
   estimate (the exact event engine on a randomly initialised VGG-16 is the case in point).

Float64 outputs of ``closed``, ``closed-cert(-default)``, ``event(-default)`` and ``call``
must equal the ReLU logits within ``1e-9`` (relative to the largest logit); for the event
dynamics (``event``, ``event-default``, ``call``) this is asserted where the certificate holds
(no early or saturated neuron — otherwise the spiking network legitimately differs). A
failure is recorded and makes the command exit with status 1.

Run ``onespike bench --help`` (or ``python benchmarks/run.py --help``). Measuring processes
are started with multiprocessing (fork server): a script calling :func:`run_benchmark` needs
the ``if __name__ == "__main__":`` guard.

The package, by role: :mod:`~onespike.apps.bench.models` (the models and their inputs),
:mod:`~onespike.apps.bench.measure` (runners, peak memory, timing, error and certificate
statistics), :mod:`~onespike.apps.bench.orchestrate` (:func:`run_benchmark`: the run, in
order) and :mod:`~onespike.apps.bench.report` (the markdown tables); the command
``onespike bench`` is :mod:`onespike.apps.cli.bench`, with the other commands. Imports run one
way: each module imports only those before it in models, measure, report, orchestrate.
"""


from onespike.apps.bench.measure import AGREEMENT_TOL, CALLS, ENGINES
from onespike.apps.bench.models import (
    BENCH_MODELS,
    DEFAULT_MODELS,
    DTYPES,
    QUICK_MODELS,
    RECIPES,
    BenchModel,
    apply_recipe,
    bench_data,
    build_model,
    kaiming_init,
    randomise_batchnorm,
)
from onespike.apps.bench.orchestrate import run_benchmark
from onespike.apps.bench.report import to_markdown

__all__ = [
    "AGREEMENT_TOL",
    "BENCH_MODELS",
    "CALLS",
    "DEFAULT_MODELS",
    "DTYPES",
    "ENGINES",
    "QUICK_MODELS",
    "RECIPES",
    "BenchModel",
    "apply_recipe",
    "bench_data",
    "build_model",
    "kaiming_init",
    "randomise_batchnorm",
    "run_benchmark",
    "to_markdown",
]
