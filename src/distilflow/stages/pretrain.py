"""pretrain: optional masked-language-model pre-training of the student on the transfer text (Turc et al. 2019).

"Pre-trained distillation" starts distillation from a student that has already learnt some language, here
from the unlabelled transfer text (training split plus rewrites). BERT's objective: 15% of tokens are
chosen; of those 80% become [MASK], 10% a random token and 10% stay, and the model predicts the originals.
Only the chosen positions go through the vocabulary-sized output layer, which is most of the cost otherwise.

Disabled (``pretrain.enabled: false``, the default) the stage only writes ``pretrain.json`` saying so, and
the distill stage starts from ``distill.student.init``; the pipeline pays nothing for the option.
"""

from __future__ import annotations

import shutil
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset, load_from_disk
from transformers import BertConfig, BertForMaskedLM, PreTrainedModel

from distilflow.config.params import Params
from distilflow.models.batching import pad_batch
from distilflow.models.loading import build_student, load_classifier, load_tokenizer
from distilflow.paths import Paths
from distilflow.tasks import get_task
from distilflow.tracking.runs import stage_run, write_json, write_lineage
from distilflow.training.curves import log_history
from distilflow.training.loop import EvalFn, LoopSettings, LossFn, train
from distilflow.training.pretrained import SUMMARY_FILE

PRIMARY_METRIC = "mlm_accuracy"


def mask_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    special_ids: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    mask_prob: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: returns (corrupted ids, boolean map of the chosen positions).

    Special tokens and padding are never chosen; a batch with nothing chosen gets one position, so the loss
    is always defined.
    """
    eligible = attention_mask.bool() & ~torch.isin(input_ids, special_ids)
    draw = torch.rand(input_ids.shape, generator=generator)
    chosen = eligible & (draw < mask_prob)
    if not chosen.any() and eligible.any():
        first = eligible.flatten().nonzero()[0, 0]
        chosen.view(-1)[first] = True
    action = torch.rand(input_ids.shape, generator=generator)
    corrupted = input_ids.clone()
    corrupted[chosen & (action < 0.8)] = mask_id
    random_positions = chosen & (action >= 0.8) & (action < 0.9)
    corrupted[random_positions] = torch.randint(vocab_size, input_ids.shape, generator=generator)[random_positions]
    return corrupted, chosen


def masked_lm_logits(
    model: BertForMaskedLM, batch: dict[str, torch.Tensor], corrupted: torch.Tensor, chosen: torch.Tensor
) -> torch.Tensor:
    hidden = model.bert(
        input_ids=corrupted, attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"]
    ).last_hidden_state
    logits: torch.Tensor = model.cls(hidden[chosen])
    return logits


def mlm_loss(special_ids: torch.Tensor, mask_id: int, vocab_size: int, mask_prob: float) -> LossFn:
    def loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        assert isinstance(model, BertForMaskedLM)
        input_ids = batch["input_ids"].cpu()
        corrupted, chosen = mask_tokens(
            input_ids, batch["attention_mask"].cpu(), special_ids, mask_id, vocab_size, mask_prob
        )
        device = batch["input_ids"].device
        logits = masked_lm_logits(model, batch, corrupted.to(device), chosen.to(device))
        return F.cross_entropy(logits.float(), batch["input_ids"][chosen.to(device)])

    return loss


def mlm_scorer(
    held_out: Dataset,
    pad_id: int,
    special_ids: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    mask_prob: float,
    seed: int,
    batch_size: int = 128,
) -> EvalFn:
    """Masked-token accuracy on held-out rows, masked the same way at every evaluation so scores compare."""
    columns = held_out.select_columns(["input_ids", "token_type_ids", "labels"])
    batches = [
        pad_batch([columns[i] for i in range(start, min(start + batch_size, len(held_out)))], pad_id, False)
        for start in range(0, len(held_out), batch_size)
    ]

    @torch.inference_mode()
    def score(model: torch.nn.Module) -> dict[str, float]:
        assert isinstance(model, BertForMaskedLM)
        generator = torch.Generator().manual_seed(seed)
        device = next(model.parameters()).device
        correct = total = 0
        loss_sum = 0.0
        for batch in batches:
            corrupted, chosen = mask_tokens(
                batch["input_ids"], batch["attention_mask"], special_ids, mask_id, vocab_size, mask_prob, generator
            )
            on_device = {k: v.to(device) for k, v in batch.items()}
            logits = masked_lm_logits(model, on_device, corrupted.to(device), chosen.to(device)).float()
            targets = on_device["input_ids"][chosen.to(device)]
            correct += int((logits.argmax(-1) == targets).sum())
            loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
            total += len(targets)
        return {PRIMARY_METRIC: correct / max(total, 1), "mlm_loss": loss_sum / max(total, 1)}

    return score


def masked_lm_student(student: PreTrainedModel) -> BertForMaskedLM:
    """The student's encoder with BERT's MLM head (decoder tied to the word embeddings)."""
    model = BertForMaskedLM(BertConfig.from_dict(student.config.to_dict()))
    model.load_state_dict({k: v for k, v in student.state_dict().items() if k.startswith("bert.")}, strict=False)
    model.tie_weights()
    return model


def pretrain_settings(params: Params) -> LoopSettings:
    """The loop's settings from ``pretrain`` (and ``run``): no clipping beyond 1.0, no early stopping."""
    config = params.pretrain
    return LoopSettings(
        epochs=config.epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio,
        max_grad_norm=1.0,
        eval_every=config.eval_every,
        early_stopping_patience=0,
        primary_metric=PRIMARY_METRIC,
        seed=params.seed,
        max_steps=config.max_steps,
        device=params.run.device,
        precision=params.run.precision,
    )


def held_out_split(transfer: Dataset, params: Params) -> tuple[Dataset, Dataset]:
    """(held-out rows for the masked-token accuracy, training rows): a seeded shuffle, at most a tenth held out."""
    order = np.random.default_rng(params.seed).permutation(len(transfer))
    held = min(params.pretrain.eval_rows, max(1, len(transfer) // 10))
    return transfer.select(order[:held]), transfer.select(order[held:])


def pretrain_student(
    student: PreTrainedModel,
    transfer: Dataset,
    tokenizer: Any,
    params: Params,
    description: str = "pretrain student (MLM)",
) -> tuple[BertForMaskedLM, dict[str, Any]]:
    config = params.pretrain
    held_out, train_rows = held_out_split(transfer, params)
    special_ids = torch.tensor(sorted(tokenizer.all_special_ids))
    vocab_size = student.config.vocab_size
    model = masked_lm_student(student)
    scorer = mlm_scorer(
        held_out,
        tokenizer.pad_token_id,
        special_ids,
        tokenizer.mask_token_id,
        vocab_size,
        config.mask_prob,
        params.seed,
    )
    before = scorer(model)
    task = get_task(params.task)
    trained, result = train(
        model,
        train_rows,
        mlm_loss(special_ids, tokenizer.mask_token_id, vocab_size, config.mask_prob),
        scorer,
        pretrain_settings(params),
        tokenizer.pad_token_id,
        task.is_regression,
        description=description,
    )
    assert isinstance(trained, BertForMaskedLM)
    metrics = {
        "enabled": True,
        "mlm_accuracy_before": before[PRIMARY_METRIC],
        f"best_{PRIMARY_METRIC}": result.best_metric,
        "best_step": result.best_step,
        "steps": result.steps,
        "train_rows": len(train_rows),
        "held_out_rows": len(held_out),
        "train_seconds": result.train_seconds,
        "train_samples_per_s": result.samples_per_s,
    }
    return trained, {"metrics": metrics, "result": result}


def run(params: Params, paths: Paths) -> dict[str, Any]:
    out = paths.student_pretrained_dir
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if not params.pretrain.enabled:
        summary: dict[str, Any] = {"enabled": False}
        write_json(out / SUMMARY_FILE, summary)
        write_json(paths.metrics_file("pretrain"), summary)
        write_lineage(paths, "pretrain", None, "augment")  # no run of its own: the chain passes through
        return {"metrics": summary}
    task = get_task(params.task)
    transfer = load_from_disk(str(paths.transfer_dir))
    tokenizer = load_tokenizer(str(paths.teacher_dir))
    teacher = load_classifier(paths.teacher_dir)
    with stage_run("pretrain", params, paths) as tracked:
        student = build_student(teacher, params.distill.student, task, params.seed)
        del teacher
        model, outcome = pretrain_student(student, transfer, tokenizer, params)
        model.save_pretrained(str(out))
        metrics = outcome["metrics"]
        write_json(out / SUMMARY_FILE, {**metrics, "student": params.distill.student.model_dump()})
        write_lineage(paths, "pretrain", tracked.run_id, "augment")
        write_json(paths.metrics_file("pretrain"), metrics)
        tracked.log_metrics({k: float(v) for k, v in metrics.items()})
        log_history(tracked, outcome["result"])
    return {"metrics": metrics}
