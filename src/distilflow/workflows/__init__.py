"""The Prefect flows: the pipeline flow that chains dvc.yaml's stages through DVC (pipeline), and the GLUE suite,
one pipeline run per task, in this process or spread over a work pool (glue, glue_pool). flows/*.py are their
entry points, for ``python flows/NAME.py`` and for deployments that load a flow from a project's checkout."""
