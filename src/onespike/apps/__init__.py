"""Applications built on the library (internal): the command line (:mod:`onespike.apps.cli`),
the benchmark harness (:mod:`onespike.apps.bench`), training of the shipped models
(:mod:`onespike.apps.training`), the reproduction of the README's accuracy table
(:mod:`onespike.apps.reproduce`), loading of user model specs (:mod:`onespike.apps.modelspec`)
and rebuilding of TorchScript / torch.export programs (:mod:`onespike.apps.rebuild`)."""
