"""Training BiT models: teacher fine-tuning and multi-distillation along a quantization schedule.

Modules: model/plan.py (schedule, methods, stages, options), model/run_folder.py (the run
folder's files), model/evaluate.py (predictions, `evaluate_run`, `export_run`); this one
runs the stages (optimizer, distributed context, the loop, resume). Their public names are
re-exported here.

`train(task, model_path, schedule, out_dir, ...)` runs BiT's Algorithm 1. The schedule
string lists weight_bits/act_bits pairs, e.g. ``"32/32,1/2,1/1"``; the first entry must be
32/32, the full-precision teacher. Stage 0 fine-tunes it on the labels (cross-entropy, or
MSE for regression) from the ``--model`` checkpoint, unless that checkpoint is already a
fine-tuned teacher (a previous run folder, a model saved by bitaccel, or
``finetuned=True``). Stage k >= 1 builds its student with
``BitBertForSequenceClassification.from_teacher(best model of stage k-1, b_w, b_a)``
(all weights, betas and alphas copied, as the official code's multi-step runs do; only
alphas that never quantized, those of the 32/32 teacher, are initialized from one seeded
batch of training data with ``calibrate``) and distills it
from the best model of stage k-1 (`model.distill`: soft cross-entropy on the logits +
MSE on the embedding and every block output). With ``progressive=True`` (BiT appendix
A.1) the initialization chain is the same but the teacher of every stage is the
full-precision stage 0.

Methods (BiT Table 2 ladder and appendix A.2), one flag (``--method``):

==============  ===========================================================  ===============
method          student                                                      schedule use
==============  ===========================================================  ===============
binarybert      Table 2 row 4, BinaryBERT-style: binary weights, every       one step:
                activation signed ({-1, +1} also after softmax/ReLU:         first -> last
                two_set=False) with a fixed scale (alpha from the first
                batch, learn_alpha=False) and no threshold (beta = 0);
                loss adds the attention-score MSE (L_att)
kd              row 5: the same + BiT's simplified KD (no L_att)             one step
two-set         row 6, "strong baseline": + two-set binarization ({0, 1}     one step
                after softmax and ReLU)
scale           appendix A.2 "+ learnable scale": + learned alpha            one step
scale-bias      row 7, BiT‡: + learned threshold beta (elastic binarization) one step
bit-onestep     the same as scale-bias (BiT‡: full-precision teacher ->      one step
                target directly)
bit             row 8, BiT: + multi-distillation along every schedule entry  every entry
==============  ===========================================================  ===============

"One step" uses only the first (32/32) and the last entry of the schedule. ``bi_attention``
(BiBERT's Bi-Attention, appendix A.3) replaces softmax + {0,1} binarization by
1{score >= 0} in every student, with any method. Differences from the papers' baselines,
stated: the weight binarizer always centres the weights (mean subtraction, BiT Sec. 3.2;
BinaryBERT's BWN does not) and its gradient is never clipped; students always use ReLU in
the FFN; the BinaryBERT row distills logits, representations and attention jointly in one
step (BinaryBERT itself runs two steps and splits a ternary half-width model); BiBERT's
direction-matching distillation is not implemented.

Optimization (BiT appendix A.6 and the official BiT code, docs/training.md): AdamW, weight
decay 0.01 on the weight matrices and embeddings only; biases, LayerNorm and every beta at
the main learning rate without decay; every alpha in its own group at ``alpha_lr`` (default
``ALPHA_LR`` = 1e-4, the official ``--clip_lr``) without decay; linear warm-up over the first
10 % of the steps then linear decay to 0 (``transformers``' get_linear_schedule_with_warmup
formula); gradient-norm clipping at 1.0. Epochs, batch size, learning rate and max_len
default to ``model.data.TASKS`` (the first value of A.6's sweeps). ``max_steps`` caps the
optimizer steps of each stage (the LR schedule spans them). Each batch is trimmed to its
longest sequence (the model masks padding, so this only saves time).

Integer fine-tune (a final ``int`` in the schedule, e.g. ``32/32,1/2,1/1,int``): one more
stage that starts from the last stage's best model (every weight, alpha and beta), freezes
the numeric format (`integer_stage_format`: export's rule on the same dev sample) and trains
through the integer-exact path (`BitBertForSequenceClassification.integer_format`,
model/integer_path.py) with the last stage's teacher and loss, for ``int_epochs`` (default 1,
capped by ``max_steps``). Its evaluations, best-model choice and saved model use the
hardware's integers, and export writes that frozen format, so the artifact computes exactly
the saved model's predictions.

SQuAD (``task="squad"``, ``squad_dir`` holding train-v1.1.json and dev-v1.1.json): the same
stages, methods, run folder and checkpoints with a span model (`BitBertForSpans`), its losses
(span_loss at stage 0; span_distillation_loss, the same L_reps / L_att, when distilling) and
EM / F1 as the dev metric (main: F1); model/task_kind.py holds what differs by task kind.
``max_len``, ``doc_stride`` and ``max_query_len`` size the sliding windows. Not supported yet
for SQuAD: the ``int`` stage and export.

Evaluation on the dev split every ``eval_every`` steps and at each epoch end (and at the
last step) keeps the best model of each stage by the task's main metric; that best model
is the next stage's teacher and initialization. At the end of a stage its best model is
also scored on every other labeled split (``test`` for mr).

Run folder (``out_dir``)::

    run.json              options, resolved defaults, stage plan, versions
    metrics.jsonl         one JSON line per optimizer step (losses, lr, grad norm) and per evaluation
    tokenizer/            the tokenizer (save_pretrained), so the run is self-contained
    checkpoint.pt         latest training state (kept after the run: delete it to save space)
    stages/K-wBaA/model/  best model of stage K (.save of the task's model class); K-wBaA-int: the integer stage
    stages/K-wBaA/result.json

Checkpoints (`model.checkpoint`) are written atomically every ``save_every`` steps and at
every evaluation: model, optimizer, scheduler, RNG states (per rank), stage, step, epoch and
batch position, best metric so far, elapsed time. ``resume=True`` continues from it and
reproduces the losses of an uninterrupted run exactly: the data order is a pure function of
(seed, stage, epoch) (DistributedSampler.set_epoch), every stage starts from a fixed seed,
and the RNG states are restored. Completed stages (with result.json) are not re-run.

Multi-process: under ``torchrun`` (WORLD_SIZE > 1) the model is wrapped in
DistributedDataParallel (gloo on CPU, NCCL on GPU), each rank reads its DistributedSampler
shard, ``batch_size`` is the global batch (split evenly across ranks), and only rank 0
evaluates and writes files. At the end of a stage every rank's parameter digest is
gathered and recorded (``replica_digests`` in result.json).
"""
from __future__ import annotations

__all__ = [  # the training API; the plan, the run folder and evaluation live in their own modules
    "ALPHA_LR", "INT_EPOCHS", "METHODS", "Method", "Options", "Stage", "has_integer_stage", "parse_schedule",
    "plan_stages", "read_metrics", "load_run", "run_stages", "stage_result", "evaluate", "evaluate_run",
    "export_run", "final_stage", "load_split", "load_stage_model", "predict", "tokenizer_reference",
    "build_stage_models", "freeze_unused_sites", "integer_stage_format", "make_optimizer", "make_scheduler",
    "param_digest", "train",
]

import dataclasses
import hashlib
import math
import os
import sys
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler
from torch.utils.data.distributed import DistributedSampler

from .bit_bert import META_FILE, BitBertForSequenceClassification
from .checkpoint import (load_checkpoint, rng_state, save_checkpoint, save_model_atomic, seed_everything,
                         set_rng_state)
from .cpu_memory import keep_freed_memory
from .data import TensorBatchDataset, load_tokenizer
from .distill import teacher_forward
from .evaluate import (evaluate, evaluate_run, export_run, final_stage, load_split, load_stage_model,
                       predict, tokenizer_reference, trim_batch)
from .plan import (ALPHA_LR, INT_EPOCHS, METHODS, Method, Options, Stage, has_integer_stage,
                   parse_schedule, plan_stages, task_spec)
from .run_folder import (CHECKPOINT_FILE, RESULT_FILE, RUN_FILE, dev_metrics_at,
                         is_run, load_run, read_metrics, run_stages, stage_path, stage_result, truncate_metrics,
                         write_json, write_metrics)
from .task_kind import task_kind

# ----------------------------------------------------------------------------- distributed context
@dataclass
class _Dist:
    world: int
    rank: int
    device: torch.device
    owns_group: bool

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def _init_distributed() -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world <= 1:
        return _Dist(1, 0, torch.device("cuda" if cuda else "cpu"), False)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank()
    device = torch.device("cpu")
    if cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    return _Dist(dist.get_world_size(), rank, device, owns)


# ----------------------------------------------------------------------------- optimizer
def make_optimizer(model: BitBertForSequenceClassification, lr: float, alpha_lr: float, weight_decay: float):
    """AdamW with the official BiT code's groups: matrices/embeddings (decay, lr), biases + LayerNorm + beta
    (no decay, lr), alpha (no decay, alpha_lr).

    Only parameters with requires_grad are included (fixed alpha/beta, unused 32-bit sites are frozen).
    """
    alphas = {id(q.alpha) for _, q in model.named_sites()}
    decay, no_decay, alpha = [], [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in alphas:
            alpha.append(p)
        elif p.dim() >= 2:
            decay.append(p)
        else:
            no_decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "lr": lr},
              {"params": no_decay, "weight_decay": 0.0, "lr": lr},
              {"params": alpha, "weight_decay": 0.0, "lr": alpha_lr}]
    # fused: one kernel per step instead of a dozen passes over every parameter (same update)
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, fused=True)


def make_scheduler(optimizer, total_steps: int, warmup: float):
    """Linear warm-up over ceil(warmup * total) steps, then linear decay to 0 at total_steps."""
    warm = math.ceil(warmup * total_steps)

    def factor(step: int) -> float:
        if step < warm:
            return step / max(1, warm)
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def freeze_unused_sites(model: BitBertForSequenceClassification) -> None:
    """requires_grad=False for alpha/beta of sites that do not quantize (32 bits) or are unused (Bi-Attention probs).

    They receive no gradient; leaving them trainable would also break DistributedDataParallel.
    """
    for name, q in model.named_sites():
        if q.bits == 32 or (model.bi_attention and name.endswith(".probs")):
            for p in q.parameters():
                p.requires_grad_(False)


def param_digest(model: torch.nn.Module) -> str:
    """SHA-256 over every parameter's bytes, in name order."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- building the models
def _load_teacher_source(opts: Options):
    """(model, how, known metrics or None) for stage 0 when it needs no fine-tuning; (None, None, None) otherwise.

    A previous run's metrics are reused when it encoded the data the same way (task, max_len, data folder,
    SQuAD windows).
    """
    path = opts.model
    cls = task_kind(opts.task).model_class
    if is_run(path):
        src = load_run(path)
        if task_spec(src["task"]).name != opts.task:
            raise ValueError(f"{path} was trained on {src['task']!r}, not {opts.task!r}")
        stage0 = run_stages(src)[0]
        result = stage_result(path, stage0)
        if result is None:
            raise ValueError(f"{path}: its full-precision stage did not finish")
        model = cls.load(os.path.join(stage_path(path, stage0), "model"))
        same = all(src["options"].get(k) == getattr(opts, k)
                   for k in ("max_len", "glue_dir", "squad_dir", "doc_stride", "max_query_len"))
        return model, f"run {path}", result["metrics"] if same else None
    if os.path.isfile(os.path.join(path, META_FILE)):
        model = cls.load(path)
        if (model.weight_bits, model.act_bits) != (32, 32):
            raise ValueError(f"{path} holds a W{model.weight_bits}A{model.act_bits} model; the schedule starts "
                             "from a 32/32 teacher")
        return model, f"bitaccel model {path}", None
    if opts.finetuned:
        model = task_kind(opts.task).pretrained(opts)
        return model, f"fine-tuned checkpoint {path}", None
    return None, None, None


def _tokenizer_source(model_path: str) -> str:
    if is_run(model_path):
        return os.path.join(model_path, "tokenizer")
    return model_path


def build_stage_models(run_dir: str, stage: Stage, opts: Options, calib: dict | None = None):
    """(student, teacher) of a stage >= 1 from the best models on disk (teacher None for stage 0).

    The student is `from_teacher(best model of stage.init)` with the method's flags; its
    uninitialized alphas are calibrated on `calib` (one batch). The teacher is the best model
    of stage.teacher, frozen, in eval mode.
    """
    if stage.index == 0:
        raise ValueError("stage 0 (the full-precision teacher) has no teacher")
    stages = run_stages(load_run(run_dir))
    m = METHODS[opts.method]
    cls = task_kind(opts.task).model_class
    init = cls.load(os.path.join(stage_path(run_dir, stages[stage.init]), "model"))
    if stage.integer:           # the same model (every alpha and beta), now through the integer-exact path
        student = init
    else:
        student = cls.from_teacher(
            init, stage.weight_bits, stage.act_bits, two_set=m.two_set, learn_alpha=m.learn_alpha,
            learn_beta=m.learn_beta, bi_attention=opts.bi_attention)
    if calib is not None and student.uninitialized_sites():
        student.calibrate(calib["input_ids"], calib["attention_mask"], calib["token_type_ids"])
    teacher = cls.load(os.path.join(stage_path(run_dir, stages[stage.teacher]), "model"))
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return student, teacher


def integer_stage_format(model: BitBertForSequenceClassification, opts: Options, dev: dict,
                         sample_size: int = 64):
    """The numeric format frozen for the integer fine-tune: export's `choose_numerics` on the first
    `sample_size` dev examples (the same rule and sample `export_run` uses)."""
    from .export import choose_numerics, float_tensors

    device = next(model.parameters()).device
    sample = trim_batch({k: dev[k][:sample_size] for k in ("input_ids", "attention_mask", "token_type_ids")})
    sample = {k: v.to(device) for k, v in sample.items()}
    return choose_numerics(model, float_tensors(model, word_bits=False), sample)


# ----------------------------------------------------------------------------- training
def _log(dctx: _Dist, quiet: bool, bar, text: str) -> None:
    if dctx.main and not quiet:
        if bar is not None and not bar.disable:
            bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)


def _train_stage(run_dir: str, opts: Options, stage: Stage, data: dict, dctx: _Dist, quiet: bool,
                 resume_state: dict | None) -> dict:
    """Train one stage (fine-tune stage 0 or distill stage >= 1); returns its result dict (rank 0)."""
    from tqdm import tqdm

    method = METHODS[opts.method]
    kind = task_kind(opts.task)
    train_t = kind.tensors(data["train"])
    n = len(train_t["input_ids"])
    seed_everything(opts.seed * 1000 + stage.index * 10 + dctx.rank)
    calib_rows = torch.randperm(n, generator=torch.Generator().manual_seed(opts.seed * 1000 + stage.index))
    calib = trim_batch({k: v[calib_rows[:opts.batch_size]] for k, v in train_t.items()})

    if stage.index == 0:
        model = kind.pretrained(opts)
        teacher = None
    else:
        model, teacher = build_stage_models(run_dir, stage, opts, calib)
        teacher.to(dctx.device)
    if stage.integer:
        model.integer_format = integer_stage_format(model, opts, data["dev"])
    freeze_unused_sites(model)
    model.to(dctx.device).train()

    if opts.batch_size % dctx.world:
        raise ValueError(f"batch size {opts.batch_size} is not divisible by the {dctx.world} processes")
    local_bs = opts.batch_size // dctx.world
    dataset = TensorBatchDataset(train_t)
    sampler = DistributedSampler(dataset, num_replicas=dctx.world, rank=dctx.rank, shuffle=True,
                                 seed=opts.seed * 1000 + stage.index)
    steps_per_epoch = math.ceil(len(sampler) / local_bs)
    epochs = (opts.int_epochs or INT_EPOCHS) if stage.integer else opts.epochs
    total = min(opts.max_steps or epochs * steps_per_epoch, epochs * steps_per_epoch) if stage.integer \
        else opts.max_steps or opts.epochs * steps_per_epoch
    optimizer = make_optimizer(model, opts.lr, opts.alpha_lr, opts.weight_decay)
    scheduler = make_scheduler(optimizer, total, opts.warmup)

    step, epoch, batch_pos, elapsed = 0, 0, 0, 0.0
    best, best_step = -math.inf, None
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        step, epoch, batch_pos = resume_state["step"], resume_state["epoch"], resume_state["batch"]
        elapsed = resume_state["elapsed_s"]
        best = resume_state["best"] if resume_state["best"] is not None else -math.inf
        best_step = resume_state["best_step"]
        set_rng_state(resume_state["rng"][dctx.rank])

    ddp = model
    if dctx.world > 1:
        ddp = DistributedDataParallel(model, device_ids=[dctx.device.index] if dctx.device.type == "cuda" else None)
    stage_dir = stage_path(run_dir, stage)
    t_start = time.perf_counter() - elapsed
    bar = tqdm(total=total, initial=step, desc=f"stage {stage.index} {stage.precision}", file=sys.stderr,
               disable=quiet or not dctx.main or not sys.stderr.isatty(), dynamic_ncols=True)

    def evaluate_now(ep: int):
        nonlocal best, best_step
        if not dctx.main:
            return
        metrics = kind.evaluate(model, opts, data["dev"])
        improved = metrics["main"] > best
        if improved:
            best, best_step = metrics["main"], step
            save_model_atomic(model, os.path.join(stage_dir, "model"))
        write_metrics(run_dir, {"kind": "eval", "stage": stage.index, "precision": stage.precision, "step": step,
                                 "epoch": ep, "split": "dev", "metrics": metrics, "best": improved})
        _log(dctx, quiet, bar, f"stage {stage.index} {stage.precision} step {step}/{total}: dev "
             + " ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "main") + (" (best)" if improved else ""))

    def save_now():
        rng = rng_state()
        if dctx.world > 1:
            gathered = [None] * dctx.world
            dist.all_gather_object(gathered, rng)
            rng = gathered
        else:
            rng = [rng]
        if dctx.main:
            save_checkpoint({"stage": stage.index, "stage_name": stage.name, "world": dctx.world,
                             "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "rng": rng, "step": step, "epoch": epoch,
                             "batch": batch_pos, "elapsed_s": time.perf_counter() - t_start,
                             "best": None if best == -math.inf else best, "best_step": best_step},
                            os.path.join(run_dir, CHECKPOINT_FILE))

    trainable = [p for p in model.parameters() if p.requires_grad]
    while step < total:
        ep = epoch
        sampler.set_epoch(ep)
        batches = list(BatchSampler(sampler, local_bs, drop_last=False))
        for rows in batches[batch_pos:]:
            batch = trim_batch({k: v[torch.as_tensor(rows)] for k, v in train_t.items()})
            batch = {k: v.to(dctx.device) for k, v in batch.items()}
            if teacher is None:
                parts = kind.loss(ddp, batch)
            else:
                out = ddp(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                          output_attentions=method.attention_loss)
                t_out = teacher_forward(teacher, batch, attentions=method.attention_loss)
                parts = kind.distill_loss(out, t_out, batch["attention_mask"], attention=method.attention_loss)
            optimizer.zero_grad(set_to_none=True)
            parts["loss"].backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(trainable, opts.clip) if opts.clip > 0 else torch.zeros(())
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            step += 1
            batch_pos += 1
            epoch_end = batch_pos == len(batches)
            if epoch_end:                       # position of the next batch
                epoch, batch_pos = ep + 1, 0
            names = sorted(parts)
            values = torch.stack([parts[k].detach().float() for k in names])
            if dctx.world > 1:                  # log the mean over ranks
                dist.all_reduce(values)
                values /= dctx.world
            if dctx.main:
                rec = {"kind": "train", "stage": stage.index, "precision": stage.precision, "step": step,
                       "epoch": ep, "lr": lr, "grad_norm": float(grad_norm),
                       "elapsed_s": round(time.perf_counter() - t_start, 3)}
                rec.update({k: float(v) for k, v in zip(names, values)})
                write_metrics(run_dir, rec)
                bar.update(1)
                bar.set_postfix(loss=f"{rec['loss']:.4f}")
            do_eval = epoch_end or step >= total or bool(opts.eval_every and step % opts.eval_every == 0)
            if do_eval:
                evaluate_now(ep)
            if do_eval or (opts.save_every and step % opts.save_every == 0):
                save_now()
            if epoch_end or step >= total:
                break
    bar.close()
    wall = time.perf_counter() - t_start

    digests = [param_digest(model)]
    if dctx.world > 1:
        gathered = [None] * dctx.world
        dist.all_gather_object(gathered, digests[0])
        digests = gathered
    result = None
    if dctx.main:
        if best_step is None:   # no evaluation ever improved (e.g. a NaN metric): keep the last model
            save_model_atomic(model, os.path.join(stage_dir, "model"))
        best_model = kind.model_class.load(os.path.join(stage_dir, "model")).to(dctx.device)
        t_eval = time.perf_counter()
        splits = {}
        for split, split_data in data.items():
            if split not in ("train", "dev"):
                splits[split] = kind.evaluate(best_model, opts, split_data)
        t_eval = time.perf_counter() - t_eval
        result = {"stage": stage.index, "name": stage.name, "precision": stage.precision,
                  "weight_bits": stage.weight_bits, "act_bits": stage.act_bits, "teacher": stage.teacher,
                  "init": stage.init, "source": "fine-tuned from --model" if stage.index == 0 else "distilled",
                  "steps": step, "epochs_run": round(step / steps_per_epoch, 3), "steps_per_epoch": steps_per_epoch,
                  "best_step": best_step, "best_dev": None if best == -math.inf else best,
                  "metrics": {"dev": dev_metrics_at(run_dir, stage, best_step), **splits},
                  "train_wall_s": round(wall, 1), "eval_wall_s": round(t_eval, 1), "replica_digests": digests,
                  "world_size": dctx.world}
        if stage.integer:
            result["integer_format"] = model.integer_format.to_dict()
        write_json(os.path.join(stage_dir, RESULT_FILE), result)
        write_metrics(run_dir, {"kind": "stage_end", "stage": stage.index, "precision": stage.precision,
                                 "step": step, "best_step": best_step, "best_dev": result["best_dev"],
                                 "train_wall_s": result["train_wall_s"]})
    return result


def _reuse_teacher(run_dir: str, opts: Options, model, how: str, data: dict, known: dict | None) -> dict:
    """Stage 0 from an already fine-tuned teacher: copy it into the run and score it (or take `known` metrics)."""
    stage = Stage(0, 32, 32, None, None)
    stage_dir = stage_path(run_dir, stage)
    save_model_atomic(model, os.path.join(stage_dir, "model"))
    t0 = time.perf_counter()
    kind = task_kind(opts.task)
    metrics = known or {split: kind.evaluate(model, opts, split_data)
                        for split, split_data in data.items() if split != "train"}
    result = {"stage": 0, "name": stage.name, "precision": stage.precision, "weight_bits": 32, "act_bits": 32,
              "teacher": None, "init": None, "source": how, "steps": 0, "best_step": None,
              "best_dev": metrics["dev"]["main"], "metrics": metrics, "train_wall_s": 0.0,
              "eval_wall_s": round(time.perf_counter() - t0, 1)}
    write_json(os.path.join(stage_dir, RESULT_FILE), result)
    write_metrics(run_dir, {"kind": "stage_end", "stage": 0, "precision": stage.precision, "step": 0,
                             "best_step": None, "best_dev": result["best_dev"], "train_wall_s": 0.0, "source": how})
    return result


def _versions() -> dict:
    import transformers

    from bitaccel.golden.version import __version__
    return {"bitaccel": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": sys.version.split()[0]}


def train(task: str, model_path: str | os.PathLike, schedule: str, out_dir: str | os.PathLike, *,
          method: str = "bit", progressive: bool = False, bi_attention: bool = False, epochs: int | None = None,
          batch_size: int | None = None, lr: float | None = None, alpha_lr: float | None = None,
          max_len: int | None = None, max_steps: int | None = None, eval_every: int | None = None,
          save_every: int = 100, seed: int = 0, weight_decay: float = 0.01, warmup: float = 0.1, clip: float = 1.0,
          eval_batch_size: int = 64, glue_dir: str | os.PathLike | None = None, finetuned: bool = False,
          int_epochs: int | None = None, squad_dir: str | os.PathLike | None = None, doc_stride: int | None = None,
          max_query_len: int | None = None, resume: bool = False, quiet: bool = False) -> dict:
    """Run (or resume) a BiT training run into `out_dir` (see the module doc).

    Returns {"run_dir", "stages": the result.json dicts of every stage} ("stages" is empty on ranks > 0).

    Raises ValueError / FileNotFoundError with the reason for bad options, a missing model or
    data, an existing run without resume, or a resume whose options differ from the run's.
    """
    opts = Options(task=task, model=os.fspath(model_path), schedule=schedule, method=method, progressive=progressive,
                   bi_attention=bi_attention, epochs=epochs, batch_size=batch_size, lr=lr, alpha_lr=alpha_lr,
                   max_len=max_len, max_steps=max_steps, eval_every=eval_every, save_every=save_every, seed=seed,
                   weight_decay=weight_decay, warmup=warmup, clip=clip, eval_batch_size=eval_batch_size,
                   glue_dir=None if glue_dir is None else os.fspath(glue_dir), finetuned=finetuned,
                   int_epochs=int_epochs, squad_dir=None if squad_dir is None else os.fspath(squad_dir),
                   doc_stride=doc_stride, max_query_len=max_query_len).resolve()
    run_dir = os.path.abspath(os.fspath(out_dir))
    stages = plan_stages(opts.schedule, opts.method, opts.progressive)
    if not os.path.isdir(opts.model):
        raise FileNotFoundError(f"--model {opts.model}: no such folder")
    exists = os.path.isfile(os.path.join(run_dir, RUN_FILE))
    if exists and not resume:
        raise ValueError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another --out")
    if exists:
        stored = load_run(run_dir)["options"]
        diff = {k: (stored.get(k), v) for k, v in dataclasses.asdict(opts).items() if stored.get(k) != v}
        if diff:
            shown = ", ".join(f"{k}: run has {a!r}, given {b!r}" for k, (a, b) in diff.items())
            raise ValueError(f"--resume with options that differ from the run's ({shown})")

    if quiet:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    dctx = _init_distributed()
    if dctx.device.type == "cpu":
        keep_freed_memory()         # large tensors reuse memory instead of fresh pages every step
    if dctx.main and not quiet and sum(not s.integer for s in stages) < len(parse_schedule(opts.schedule)):
        print(f"method {opts.method} distills in one step: schedule {opts.schedule} -> "
              + ", ".join(f"{s.weight_bits}/{s.act_bits}" + (" int" if s.integer else "") for s in stages),
              file=sys.stderr)
    try:
        tok_src = _tokenizer_source(opts.model)
        tokenizer = load_tokenizer(tok_src) if not (exists and resume) else \
            load_tokenizer(os.path.join(run_dir, "tokenizer"))
        kind = task_kind(opts.task)
        data = {split: kind.load_split(opts, split, tokenizer) for split in task_spec(opts.task).splits}
        dctx.barrier()
        if dctx.main and not exists:
            os.makedirs(run_dir, exist_ok=True)
            tokenizer.save_pretrained(os.path.join(run_dir, "tokenizer"))
            write_json(os.path.join(run_dir, RUN_FILE), {
                "format": "bitaccel-run", "version": 1, "task": opts.task, "options": dataclasses.asdict(opts),
                "stages": [dataclasses.asdict(s) for s in stages], "tokenizer_source": os.path.abspath(tok_src),
                "world_size": dctx.world, "versions": _versions(),
                "examples": {k: len(kind.tensors(v)["input_ids"]) for k, v in data.items()}})
        dctx.barrier()

        ckpt_path = os.path.join(run_dir, CHECKPOINT_FILE)
        results = []
        for stage in stages:
            done = stage_result(run_dir, stage)
            if done is not None:
                results.append(done)
                continue
            state = None
            if resume and os.path.isfile(ckpt_path):
                ckpt = load_checkpoint(ckpt_path, map_location=dctx.device)
                if ckpt["stage"] == stage.index:
                    if ckpt["world"] != dctx.world:
                        raise ValueError(f"checkpoint was written by {ckpt['world']} processes, resuming with "
                                         f"{dctx.world}: the data order would differ")
                    state = ckpt
            if dctx.main:
                truncate_metrics(run_dir, stage.index, state["step"] if state else 0)
            dctx.barrier()
            if stage.index == 0:
                model, how, known = _load_teacher_source(opts)
                if model is not None:
                    if dctx.main:
                        results.append(_reuse_teacher(run_dir, opts, model, how, data, known))
                    dctx.barrier()
                    continue
            results.append(_train_stage(run_dir, opts, stage, data, dctx, quiet, state))
            dctx.barrier()
    finally:
        if dctx.owns_group and dist.is_initialized():
            dist.destroy_process_group()
    return {"run_dir": run_dir, "stages": results if dctx.main else []}
