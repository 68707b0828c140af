"""Imported first (before torch) by the benchmarks that run models: the thread policy a shared CPU needs.

On a shared, oversubscribed CPU, spinning OpenMP threads wait for a descheduled peer and burn the time slice
(measured here: 2 spinning threads took ~5x longer per step than 2 passive ones). A value already set wins.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
