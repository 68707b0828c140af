"""Data validation: the pipeline's gate between raw GLUE files and tokenization.

``validate_folder`` reads a task folder strictly (``distilflow.data.glue_io``), runs the task kind's Great
Expectations suite on each split plus the cross-split checks, and returns a ``ValidationReport`` whose
findings name file, line, column, rule and value. Importing this package is cheap: GX loads on first use.
"""

from distilflow.config.rules import RULES, Rule
from distilflow.data.validation.core import summary_json, validate_folder
from distilflow.data.validation.findings import DataValidationError, Finding, RuleCount, ValidationReport

__all__ = [
    "RULES",
    "DataValidationError",
    "Finding",
    "Rule",
    "RuleCount",
    "ValidationReport",
    "summary_json",
    "validate_folder",
]
