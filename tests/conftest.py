import os
import sys

import matplotlib
import torch
from hypothesis import settings

matplotlib.use("Agg")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# CI (the CI environment variable set, as CI services and `CI=true bash .ci/run` do): the
# same examples on every run, so a red build is reproducible and never a dice roll; the
# failing example's blob is printed for @reproduce_failure. Local runs keep hypothesis'
# random exploration (and its example database). Per-test @settings still set the counts.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
