"""distilflow: validate a GLUE dataset, fine-tune a BERT teacher, distill it into BERT-tiny, register and serve."""

__version__ = "0.1.0"
