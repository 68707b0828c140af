"""The served model as MLflow *models from code*: this file is logged with the model and run when it loads.

No pickle of a Python object is stored, so a version loads in any interpreter with the pinned requirements:
MLflow executes this file, whose only job is to name the model class. ``distilflow`` itself travels in the
model's ``code/`` folder (``code_paths`` at logging), which MLflow puts on ``sys.path`` before running it.
"""

import mlflow

from distilflow.serving.classifier import TextClassifier

mlflow.models.set_model(TextClassifier())
