"""Every MLflow tag key distilflow writes or reads, in one place: rename a tag here and nowhere else.

Stage runs (``tracking.stage_run``) and registered versions (``registration``) carry the same key for the same
fact, so the data version, params hash and commit of a model read the same way on its run and on its version.
"""

from __future__ import annotations

# On every stage run, and (task, data, params, commit) on every registered version.
STAGE_TAG = "distilflow.stage"
TASK_TAG = "distilflow.task"
PIPELINE_ID_TAG = "distilflow.pipeline_id"
GIT_COMMIT_TAG = "mlflow.source.git.commit"  # MLflow's own key: its UI links the run to the commit
DATA_TAG = "distilflow.dvc_data_md5"  # the data version: DVC's md5 of data/raw in dvc.lock
PARAMS_HASH_TAG = "distilflow.params_hash"
NOTE_TAG = "mlflow.note.content"  # MLflow's own key: the description the UI shows

# On registered versions: what the model is and how it is served.
ROLE_TAG = "distilflow.role"
MODEL_HASH_TAG = "distilflow.model_md5"  # weights + the settings of the served artifact: one version each
WEIGHTS_HASH_TAG = "distilflow.weights_md5"  # the weight files alone: what a person's rollback is about
LINEAGE_TAG_PREFIX = "lineage."  # lineage.<stage>: the MLflow run of each stage that made the model
METRIC_TAG = "distilflow.primary_metric_value"
METRIC_NAME_TAG = "distilflow.primary_metric"
LATENCY_TAG = "distilflow.latency_p95_ms"
BASELINE_TAG = "distilflow.baseline_metric_value"
SERVING_BACKEND_TAG = "distilflow.serving_backend"
SERVING_EXPORT_TAG = "distilflow.serving_export"
SERVED_ARTIFACT_TAG = "distilflow.served_artifact"
SERVED_METRIC_TAG = "distilflow.served_metric_value"
AGREEMENT_TAG = "distilflow.served_agreement"
DEV_PREDICTIONS_TAG = "distilflow.dev_predictions"  # artifact URI: the served form's per-example dev answers

# On registered versions: the promotion gate and people's decisions.
GATE_TAG = "distilflow.registry.gate"
GATE_REASONS_TAG = "distilflow.gate_reasons"
GATE_BOOTSTRAP_TAG = "distilflow.gate_bootstrap"  # JSON: the paired bootstrap comparisons behind the decision
PROMOTED_TAG = "distilflow.promoted"
ROLLED_BACK_TAG = "distilflow.rolled_back"
PREVIOUS_CHAMPION_TAG = "distilflow.previous_champion"

# On the registered model itself.
CHAMPION_SET_TAG = "distilflow.champion_set"  # the version distilflow last made champion
# "FROM->TO" while distilflow moves @champion: a promotion killed between the alias move and its tags is
# finished (or undone) by the next run instead of being taken for a person's move.
CHAMPION_MOVING_TAG = "distilflow.champion_moving"

# On the experiment (MLflow's own keys). The kind says "classic training runs, not GenAI traces"; MLflow 3's UI maps it
# to the view it opens with the `workflowType` URL parameter (3.17's UI reads only that parameter or a per-browser
# toggle, default GenAI), so every link distilflow writes into the experiment carries it: see ui_query.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"  # the UI's "Machine learning" / "Model training" kind
UI_WORKFLOW_TYPES = {EXPERIMENT_KIND: "machine_learning", "genai_development": "genai"}  # as MLflow's UI maps them

# On registered versions: every stage run that made the model as one JSON object {stage: run id}, so the version's
# tag list shows one chip for the lineage, not one per stage. Versions registered before it carry lineage.<stage>.
LINEAGE_TAG = "distilflow.registry.lineage"


def ui_query(experiment_tags: dict[str, str]) -> str:
    """The query that opens an MLflow UI page in the view of the experiment's kind ("" when it declares none)."""
    workflow = UI_WORKFLOW_TYPES.get(experiment_tags.get(EXPERIMENT_KIND_TAG, ""))
    return f"?workflowType={workflow}" if workflow else ""
