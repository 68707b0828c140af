"""distilflow: validate a GLUE dataset, fine-tune a BERT teacher, distill it into BERT-tiny, register and serve."""

import os

# Before anything loads torch's OpenMP runtime: with spinning waits, a thread whose peer was descheduled burns its
# time slice, and on a small or shared CPU (2 cores here, Prefect/MLflow beside the stage) training steps ran ~5x
# slower than with passive waits. An explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
