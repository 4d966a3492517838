"""The ``onespike`` command line (internal; the console script is :func:`main`).

* :mod:`~onespike.apps.cli.app` — the command group, global options and error mapping;
* :mod:`~onespike.apps.cli.options` — the shared options, choices from the registries;
* :mod:`~onespike.apps.cli.resolve` — the one resolver of networks (``--snn``, ``--model``,
  ``--weights``, ``--demo``), data and conversion options;
* :mod:`~onespike.apps.cli.errors` — one line per failure, from the errors' attributes;
* :mod:`~onespike.apps.cli.report` — tables and JSON;
* one module per command: ``demo``, ``convert``, ``evaluate``, ``info``, ``plot``,
  ``robustness``, ``bench`` (the harness: :mod:`onespike.apps.bench`), ``export`` (the
  writers: :mod:`onespike.export`).
"""

from onespike.apps.cli.app import DEFAULT_THREADS, OnespikeGroup, main
from onespike.apps.cli.errors import describe_error
from onespike.apps.cli.resolve import check_output_file, load_data, progress_enabled

__all__ = [
    "DEFAULT_THREADS",
    "OnespikeGroup",
    "check_output_file",
    "describe_error",
    "load_data",
    "main",
    "progress_enabled",
]
