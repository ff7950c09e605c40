"""Training BiT models: teacher fine-tuning and multi-distillation along a quantization schedule.

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

Evaluation on the dev split every ``eval_every`` steps and at each epoch end (and at the
last step) keeps the best model of each stage by the task's main metric; that best model
is the next stage's teacher and initialization. At the end of a stage its best model is
also scored on every other labeled split (``test`` for mr).

Run folder (``out_dir``)::

    run.json              options, resolved defaults, stage plan, versions
    metrics.jsonl         one JSON line per optimizer step (losses, lr, grad norm) and per evaluation
    tokenizer/            the tokenizer (save_pretrained), so the run is self-contained
    checkpoint.pt         latest training state (kept after the run: delete it to save space)
    stages/K-wBaA/model/  best model of stage K (BitBertForSequenceClassification.save); K-wBaA-int: the integer stage
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

import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler
from torch.utils.data.distributed import DistributedSampler

from .bit_bert import META_FILE, BitBertForSequenceClassification
from .checkpoint import (load_checkpoint, rng_state, save_checkpoint, save_model_atomic, seed_everything,
                         set_rng_state)
from .cpu_memory import keep_freed_memory
from .data import TensorBatchDataset, encode, get_task, load_tokenizer
from .distill import distillation_loss, teacher_forward
from .metrics import glue_metrics
from .quant import ACT_BITS, WEIGHT_BITS

#: Learning rate of every alpha (official BiT code: --clip_lr 1e-4, weight decay 0, its own group).
ALPHA_LR = 1e-4
#: Epochs of the final integer fine-tune when the run sets none (capped by max_steps like every stage).
INT_EPOCHS = 1

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
RESULT_FILE = "result.json"


# ----------------------------------------------------------------------------- schedule and methods
INT_ENTRY = "int"


def parse_schedule(text: str) -> list[tuple[int, int]]:
    """"32/32,1/2,1/1" -> [(32, 32), (1, 2), (1, 1)] (weight_bits, act_bits); ValueError if malformed.

    The first entry must be 32/32 (the full-precision teacher). Each later entry must be
    strictly lower than the one before it (BiT Sec. 4: neither width grows, at least one shrinks).
    A final ``int`` entry (`has_integer_stage`) is not a precision and is not returned.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"schedule must be a string like '32/32,1/2,1/1', not {text!r}")
    out = []
    items = text.replace(" ", "").split(",")
    if has_integer_stage(text):
        items = items[:-1]
    for item in items:
        if item == INT_ENTRY:
            raise ValueError(f"schedule {text!r}: 'int' (the integer fine-tune) can only be the last entry")
        parts = item.split("/")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f"bad schedule entry {item!r} in {text!r}: expected weight_bits/act_bits, e.g. 1/2")
        wb, ab = int(parts[0]), int(parts[1])
        if wb not in WEIGHT_BITS:
            raise ValueError(f"schedule entry {item!r}: weight bits must be one of {WEIGHT_BITS}")
        if ab not in ACT_BITS:
            raise ValueError(f"schedule entry {item!r}: activation bits must be one of {ACT_BITS}")
        out.append((wb, ab))
    if out[0] != (32, 32):
        raise ValueError(f"schedule {text!r} must start with 32/32 (the full-precision teacher)")
    for (w0, a0), (w1, a1) in zip(out, out[1:]):
        if w1 > w0 or a1 > a0 or (w1, a1) == (w0, a0):
            raise ValueError(f"schedule {text!r}: {w1}/{a1} after {w0}/{a0} is not a lower precision "
                             "(each step must lower the weight or activation bits and raise neither)")
    return out


def has_integer_stage(text: str) -> bool:
    """Whether a schedule ends with ``int``: a final integer fine-tune of the last precision
    through the integer-exact path (model/integer_path.py) at a frozen numeric format."""
    return isinstance(text, str) and text.replace(" ", "").split(",")[-1] == INT_ENTRY


@dataclass(frozen=True)
class Method:
    """A preset of BiT's ablation ladder (see the module doc)."""
    name: str
    two_set: bool
    learn_alpha: bool
    learn_beta: bool
    attention_loss: bool
    multi_step: bool


METHODS = {m.name: m for m in (
    Method("binarybert", two_set=False, learn_alpha=False, learn_beta=False, attention_loss=True, multi_step=False),
    Method("kd", two_set=False, learn_alpha=False, learn_beta=False, attention_loss=False, multi_step=False),
    Method("two-set", two_set=True, learn_alpha=False, learn_beta=False, attention_loss=False, multi_step=False),
    Method("scale", two_set=True, learn_alpha=True, learn_beta=False, attention_loss=False, multi_step=False),
    Method("scale-bias", two_set=True, learn_alpha=True, learn_beta=True, attention_loss=False, multi_step=False),
    Method("bit-onestep", two_set=True, learn_alpha=True, learn_beta=True, attention_loss=False, multi_step=False),
    Method("bit", two_set=True, learn_alpha=True, learn_beta=True, attention_loss=False, multi_step=True),
)}


@dataclass(frozen=True)
class Stage:
    """One step of the schedule: `init` is the stage whose best model initializes it, `teacher` the
    stage it is distilled from (both None for stage 0, the teacher, from the --model checkpoint)."""
    index: int
    weight_bits: int
    act_bits: int
    teacher: int | None
    init: int | None
    integer: bool = False       # the integer fine-tune: forward = the hardware's integers (integer_path)

    @property
    def precision(self) -> str:
        return f"W{self.weight_bits}A{self.act_bits}" + ("-int" if self.integer else "")

    @property
    def name(self) -> str:
        return f"{self.index}-w{self.weight_bits}a{self.act_bits}" + ("-int" if self.integer else "")


def plan_stages(schedule: str, method: str = "bit", progressive: bool = False) -> list[Stage]:
    """The stages of a run (see the module doc): Algorithm 1, or progressive, or one step."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    steps = parse_schedule(schedule)
    if not METHODS[method].multi_step and len(steps) > 2:
        steps = [steps[0], steps[-1]]
    if progressive and not METHODS[method].multi_step:
        raise ValueError(f"progressive distillation needs the multi-step method 'bit', not {method!r}")
    stages = [Stage(0, 32, 32, None, None)]
    for i, (wb, ab) in enumerate(steps[1:], 1):
        stages.append(Stage(i, wb, ab, teacher=0 if progressive else i - 1, init=i - 1))
    if has_integer_stage(schedule):
        last, m = stages[-1], METHODS[method]
        if last.index == 0 or last.weight_bits != 1:
            raise ValueError(f"schedule {schedule!r}: 'int' fine-tunes a binary-weight student (W1Ax), "
                             f"not {last.precision}")
        if not m.two_set:
            raise ValueError(f"schedule {schedule!r}: 'int' needs the two-set activations of the hardware; "
                             f"method {method!r} uses signed activations everywhere")
        stages.append(Stage(last.index + 1, last.weight_bits, last.act_bits, teacher=last.teacher,
                            init=last.index, integer=True))
    return stages


# ----------------------------------------------------------------------------- options
@dataclass
class Options:
    """Everything that defines a run (stored in run.json; None = the task's default)."""
    task: str
    model: str
    schedule: str
    method: str = "bit"
    progressive: bool = False
    bi_attention: bool = False
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    alpha_lr: float | None = None
    max_len: int | None = None
    max_steps: int | None = None
    eval_every: int | None = None
    save_every: int = 100
    seed: int = 0
    weight_decay: float = 0.01
    warmup: float = 0.1
    clip: float = 1.0
    eval_batch_size: int = 64
    glue_dir: str | None = None
    finetuned: bool = False
    int_epochs: int | None = None

    def resolve(self) -> "Options":
        """A copy with task defaults filled in and every value checked (ValueError)."""
        spec = get_task(self.task)
        o = dataclasses.replace(self, task=spec.name)
        o.epochs = spec.epochs if o.epochs is None else o.epochs
        o.batch_size = spec.batch_size if o.batch_size is None else o.batch_size
        o.lr = spec.learning_rate if o.lr is None else float(o.lr)
        o.alpha_lr = ALPHA_LR if o.alpha_lr is None else float(o.alpha_lr)
        o.max_len = spec.max_len if o.max_len is None else o.max_len
        plan_stages(o.schedule, o.method, o.progressive)
        for name in ("epochs", "batch_size", "max_len", "eval_batch_size"):
            v = getattr(o, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if has_integer_stage(o.schedule) and o.bi_attention:
            raise ValueError("the 'int' stage runs the hardware's softmax: it cannot follow Bi-Attention students")
        for name in ("max_steps", "eval_every", "int_epochs"):
            v = getattr(o, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if not isinstance(o.save_every, int) or o.save_every < 0:
            raise ValueError(f"save_every must be an integer >= 0 (0: only at evaluations), not {o.save_every!r}")
        if o.max_len < 2:
            raise ValueError(f"max_len must be >= 2, not {o.max_len}")
        if not (o.lr > 0 and o.alpha_lr > 0):
            raise ValueError(f"learning rates must be > 0, not lr={o.lr} alpha_lr={o.alpha_lr}")
        if not 0 <= o.warmup < 1:
            raise ValueError(f"warmup must be a fraction in [0, 1), not {o.warmup}")
        if o.clip < 0 or o.weight_decay < 0:
            raise ValueError(f"clip and weight_decay must be >= 0, not {o.clip}, {o.weight_decay}")
        o.model = os.path.abspath(os.fspath(o.model))
        o.glue_dir = None if o.glue_dir is None else os.path.abspath(os.fspath(o.glue_dir))
        return o


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


# ----------------------------------------------------------------------------- data and evaluation
def _trim(batch: dict) -> dict:
    """Cut a batch to its longest sequence (trailing all-padding columns removed)."""
    n = int(batch["attention_mask"].sum(dim=1).max())
    return {k: (v[:, :max(n, 1)] if v.dim() == 2 else v) for k, v in batch.items()}


def load_split(task: str, split: str, tokenizer, max_len: int, glue_dir: str | None) -> dict[str, torch.Tensor]:
    """Encoded tensors of one split (ValueError / FileNotFoundError with the reason)."""
    spec = get_task(task)
    if split not in spec.splits:
        raise ValueError(f"{spec.name} has no labeled split {split!r} (splits: {', '.join(spec.splits)})")
    if spec.name != "mr" and glue_dir is None:
        raise ValueError(f"{spec.name} is a GLUE task: pass the GLUE folder with --glue-dir")
    examples = spec.load(split, glue_dir if spec.name != "mr" else None)
    if not examples:
        raise ValueError(f"{spec.name} {split}: no examples")
    return encode(examples, tokenizer, max_len, regression=spec.is_regression)


@torch.no_grad()
def predict(model: BitBertForSequenceClassification, tensors: dict, batch_size: int = 64) -> np.ndarray:
    """Eval-mode logits (n, num_labels) as float64; batches sorted by length and trimmed (same results)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    lengths = tensors["attention_mask"].sum(dim=1)
    order = torch.argsort(lengths, descending=True, stable=True)
    out = np.zeros((len(order), model.num_labels), dtype=np.float64)
    for i in range(0, len(order), batch_size):
        rows = order[i:i + batch_size]
        b = _trim({k: tensors[k][rows] for k in ("input_ids", "attention_mask", "token_type_ids")})
        b = {k: v.to(device) for k, v in b.items()}
        logits = model(b["input_ids"], b["attention_mask"], b["token_type_ids"]).logits
        out[rows.numpy()] = logits.double().cpu().numpy()
    model.train(was_training)
    return out


def evaluate(model: BitBertForSequenceClassification, task: str, tensors: dict, batch_size: int = 64) -> dict:
    """glue_metrics of the model's eval-mode predictions on encoded, labeled tensors."""
    return glue_metrics(task, predict(model, tensors, batch_size), tensors["labels"].numpy())


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


# ----------------------------------------------------------------------------- run folder
def _stage_dir(run_dir: str, stage: Stage) -> str:
    return os.path.join(run_dir, "stages", stage.name)


def _write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_metrics(run_dir: str, record: dict) -> None:
    """Append one JSON line to metrics.jsonl."""
    with open(os.path.join(run_dir, METRICS_FILE), "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def _truncate_metrics(run_dir: str, stage: int, step: int) -> None:
    """Keep the lines up to (stage, step): what the checkpoint being resumed had seen."""
    path = os.path.join(run_dir, METRICS_FILE)
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = [ln for ln in f if ln.strip()]
    keep = [ln for ln in lines if (json.loads(ln)["stage"], json.loads(ln)["step"]) <= (stage, step)]
    with open(path + ".tmp", "w") as f:
        f.writelines(keep)
    os.replace(path + ".tmp", path)


def read_metrics(run_dir: str) -> list[dict]:
    """The records of a run's metrics.jsonl."""
    with open(os.path.join(run_dir, METRICS_FILE)) as f:
        return [json.loads(ln) for ln in f if ln.strip()]


def load_run(run_dir: str | os.PathLike) -> dict:
    """run.json of a run folder (FileNotFoundError / ValueError with the reason)."""
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    path = os.path.join(run_dir, RUN_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{run_dir}: not a bitaccel run folder (no {RUN_FILE})")
    with open(path) as f:
        run = json.load(f)
    if run.get("format") != "bitaccel-run" or run.get("version") != 1:
        raise ValueError(f"{path}: not a bitaccel run (format {run.get('format')!r}, version {run.get('version')!r})")
    return run


def run_stages(run: dict) -> list[Stage]:
    return [Stage(**s) for s in run["stages"]]


def stage_result(run_dir: str, stage: Stage) -> dict | None:
    path = os.path.join(_stage_dir(run_dir, stage), RESULT_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _is_run(path: str) -> bool:
    return os.path.isfile(os.path.join(path, RUN_FILE))


# ----------------------------------------------------------------------------- building the models
def _load_teacher_source(opts: Options, num_labels: int):
    """(model, how, known metrics or None) for stage 0 when it needs no fine-tuning; (None, None, None) otherwise.

    A previous run's metrics are reused when it encoded the data the same way (task, max_len, GLUE folder).
    """
    path = opts.model
    if _is_run(path):
        src = load_run(path)
        if get_task(src["task"]).name != opts.task:
            raise ValueError(f"{path} was trained on {src['task']!r}, not {opts.task!r}")
        stage0 = run_stages(src)[0]
        result = stage_result(path, stage0)
        if result is None:
            raise ValueError(f"{path}: its full-precision stage did not finish")
        model = BitBertForSequenceClassification.load(os.path.join(_stage_dir(path, stage0), "model"))
        same = all(src["options"][k] == getattr(opts, k) for k in ("max_len", "glue_dir"))
        return model, f"run {path}", result["metrics"] if same else None
    if os.path.isfile(os.path.join(path, META_FILE)):
        model = BitBertForSequenceClassification.load(path)
        if (model.weight_bits, model.act_bits) != (32, 32):
            raise ValueError(f"{path} holds a W{model.weight_bits}A{model.act_bits} model; the schedule starts "
                             "from a 32/32 teacher")
        return model, f"bitaccel model {path}", None
    if opts.finetuned:
        model = BitBertForSequenceClassification.from_pretrained(path, num_labels=num_labels, seed=opts.seed)
        return model, f"fine-tuned checkpoint {path}", None
    return None, None, None


def _tokenizer_source(model_path: str) -> str:
    if _is_run(model_path):
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
    init = BitBertForSequenceClassification.load(os.path.join(_stage_dir(run_dir, stages[stage.init]), "model"))
    if stage.integer:           # the same model (every alpha and beta), now through the integer-exact path
        student = init
    else:
        student = BitBertForSequenceClassification.from_teacher(
            init, stage.weight_bits, stage.act_bits, two_set=m.two_set, learn_alpha=m.learn_alpha,
            learn_beta=m.learn_beta, bi_attention=opts.bi_attention)
    if calib is not None and student.uninitialized_sites():
        student.calibrate(calib["input_ids"], calib["attention_mask"], calib["token_type_ids"])
    teacher = BitBertForSequenceClassification.load(os.path.join(_stage_dir(run_dir, stages[stage.teacher]), "model"))
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
    sample = _trim({k: dev[k][:sample_size] for k in ("input_ids", "attention_mask", "token_type_ids")})
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
    train_t = data["train"]
    n = len(train_t["input_ids"])
    seed_everything(opts.seed * 1000 + stage.index * 10 + dctx.rank)
    calib_rows = torch.randperm(n, generator=torch.Generator().manual_seed(opts.seed * 1000 + stage.index))
    calib = _trim({k: v[calib_rows[:opts.batch_size]] for k, v in train_t.items()})

    if stage.index == 0:
        model = BitBertForSequenceClassification.from_pretrained(
            opts.model, num_labels=get_task(opts.task).num_labels, seed=opts.seed)
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
    stage_dir = _stage_dir(run_dir, stage)
    task = opts.task
    t_start = time.perf_counter() - elapsed
    bar = tqdm(total=total, initial=step, desc=f"stage {stage.index} {stage.precision}", file=sys.stderr,
               disable=quiet or not dctx.main or not sys.stderr.isatty(), dynamic_ncols=True)

    def evaluate_now(ep: int):
        nonlocal best, best_step
        if not dctx.main:
            return
        metrics = evaluate(model, task, data["dev"], opts.eval_batch_size)
        improved = metrics["main"] > best
        if improved:
            best, best_step = metrics["main"], step
            save_model_atomic(model, os.path.join(stage_dir, "model"))
        _write_metrics(run_dir, {"kind": "eval", "stage": stage.index, "precision": stage.precision, "step": step,
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
            batch = _trim({k: v[torch.as_tensor(rows)] for k, v in train_t.items()})
            batch = {k: v.to(dctx.device) for k, v in batch.items()}
            if teacher is None:
                out = ddp(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], labels=batch["labels"])
                parts = {"loss": out.loss}
            else:
                out = ddp(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                          output_attentions=method.attention_loss)
                t_out = teacher_forward(teacher, batch, attentions=method.attention_loss)
                parts = distillation_loss(out, t_out, batch["attention_mask"], attention=method.attention_loss)
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
                _write_metrics(run_dir, rec)
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
        best_model = BitBertForSequenceClassification.load(os.path.join(stage_dir, "model")).to(dctx.device)
        t_eval = time.perf_counter()
        splits = {}
        for split, tensors in data.items():
            if split not in ("train", "dev"):
                splits[split] = evaluate(best_model, task, tensors, opts.eval_batch_size)
        t_eval = time.perf_counter() - t_eval
        result = {"stage": stage.index, "name": stage.name, "precision": stage.precision,
                  "weight_bits": stage.weight_bits, "act_bits": stage.act_bits, "teacher": stage.teacher,
                  "init": stage.init, "source": "fine-tuned from --model" if stage.index == 0 else "distilled",
                  "steps": step, "epochs_run": round(step / steps_per_epoch, 3), "steps_per_epoch": steps_per_epoch,
                  "best_step": best_step, "best_dev": None if best == -math.inf else best,
                  "metrics": {"dev": _dev_metrics_at(run_dir, stage, best_step), **splits},
                  "train_wall_s": round(wall, 1), "eval_wall_s": round(t_eval, 1), "replica_digests": digests,
                  "world_size": dctx.world}
        if stage.integer:
            result["integer_format"] = model.integer_format.to_dict()
        _write_json(os.path.join(stage_dir, RESULT_FILE), result)
        _write_metrics(run_dir, {"kind": "stage_end", "stage": stage.index, "precision": stage.precision,
                                 "step": step, "best_step": best_step, "best_dev": result["best_dev"],
                                 "train_wall_s": result["train_wall_s"]})
    return result


def _dev_metrics_at(run_dir: str, stage: Stage, step: int | None) -> dict | None:
    """The dev metrics logged for `stage` at `step` (the best model's)."""
    if step is None:
        return None
    for rec in read_metrics(run_dir):
        if rec["kind"] == "eval" and rec["stage"] == stage.index and rec["step"] == step:
            return rec["metrics"]
    return None


def _reuse_teacher(run_dir: str, opts: Options, model, how: str, data: dict, known: dict | None) -> dict:
    """Stage 0 from an already fine-tuned teacher: copy it into the run and score it (or take `known` metrics)."""
    stage = Stage(0, 32, 32, None, None)
    stage_dir = _stage_dir(run_dir, stage)
    save_model_atomic(model, os.path.join(stage_dir, "model"))
    t0 = time.perf_counter()
    metrics = known or {split: evaluate(model, opts.task, tensors, opts.eval_batch_size)
                        for split, tensors in data.items() if split != "train"}
    result = {"stage": 0, "name": stage.name, "precision": stage.precision, "weight_bits": 32, "act_bits": 32,
              "teacher": None, "init": None, "source": how, "steps": 0, "best_step": None,
              "best_dev": metrics["dev"]["main"], "metrics": metrics, "train_wall_s": 0.0,
              "eval_wall_s": round(time.perf_counter() - t0, 1)}
    _write_json(os.path.join(stage_dir, RESULT_FILE), result)
    _write_metrics(run_dir, {"kind": "stage_end", "stage": 0, "precision": stage.precision, "step": 0,
                             "best_step": None, "best_dev": result["best_dev"], "train_wall_s": 0.0, "source": how})
    return result


def _versions() -> dict:
    import transformers

    from golden.version import __version__
    return {"bitaccel": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": sys.version.split()[0]}


def train(task: str, model_path: str | os.PathLike, schedule: str, out_dir: str | os.PathLike, *,
          method: str = "bit", progressive: bool = False, bi_attention: bool = False, epochs: int | None = None,
          batch_size: int | None = None, lr: float | None = None, alpha_lr: float | None = None,
          max_len: int | None = None, max_steps: int | None = None, eval_every: int | None = None,
          save_every: int = 100, seed: int = 0, weight_decay: float = 0.01, warmup: float = 0.1, clip: float = 1.0,
          eval_batch_size: int = 64, glue_dir: str | os.PathLike | None = None, finetuned: bool = False,
          int_epochs: int | None = None, resume: bool = False, quiet: bool = False) -> dict:
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
                   int_epochs=int_epochs).resolve()
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
        spec = get_task(opts.task)
        data = {split: load_split(opts.task, split, tokenizer, opts.max_len, opts.glue_dir) for split in spec.splits}
        dctx.barrier()
        if dctx.main and not exists:
            os.makedirs(run_dir, exist_ok=True)
            tokenizer.save_pretrained(os.path.join(run_dir, "tokenizer"))
            _write_json(os.path.join(run_dir, RUN_FILE), {
                "format": "bitaccel-run", "version": 1, "task": opts.task, "options": dataclasses.asdict(opts),
                "stages": [dataclasses.asdict(s) for s in stages], "tokenizer_source": os.path.abspath(tok_src),
                "world_size": dctx.world, "versions": _versions(), "examples": {k: len(v["input_ids"])
                                                                               for k, v in data.items()}})
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
                _truncate_metrics(run_dir, stage.index, state["step"] if state else 0)
            dctx.barrier()
            if stage.index == 0:
                model, how, known = _load_teacher_source(opts, spec.num_labels)
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


# ----------------------------------------------------------------------------- using a finished run
def final_stage(run_dir: str, stage: int | None = None) -> tuple[Stage, dict]:
    """(stage, result) of the last finished stage of a run (or of `stage`); ValueError if unfinished."""
    run = load_run(run_dir)
    stages = run_stages(run)
    if stage is not None:
        if not 0 <= stage < len(stages):
            raise ValueError(f"{run_dir} has stages 0..{len(stages) - 1}, not {stage}")
        chosen = stages[stage]
    else:
        chosen = stages[-1]
    result = stage_result(run_dir, chosen)
    if result is None:
        raise ValueError(f"{run_dir}: stage {chosen.name} has not finished (resume the run with --resume)")
    return chosen, result


def load_stage_model(run_dir: str, stage: int | None = None) -> BitBertForSequenceClassification:
    """The best model of the run's final stage (or of `stage`), in eval mode."""
    chosen, _ = final_stage(run_dir, stage)
    return BitBertForSequenceClassification.load(os.path.join(_stage_dir(run_dir, chosen), "model")).eval()


def _integer_logits(art, tensors: dict, batch_size: int = 64) -> np.ndarray:
    from golden.model import IntegerModel

    model = IntegerModel(art)
    n = len(tensors["input_ids"])
    out = np.zeros((n, art.config.num_labels), dtype=np.float64)
    for i in range(0, n, batch_size):
        b = _trim({k: tensors[k][i:i + batch_size] for k in ("input_ids", "attention_mask", "token_type_ids")})
        out[i:i + batch_size] = model.forward(b["input_ids"].numpy(), b["attention_mask"].numpy(),
                                              b["token_type_ids"].numpy())["logits"]
    return out


def evaluate_run(run_dir: str | os.PathLike, split: str = "dev", integer: str | os.PathLike | None = None,
                 stage: int | None = None, glue_dir: str | os.PathLike | None = None) -> dict:
    """Metrics of a run's final (or given) stage on a split; with `integer` (an artifact path) also
    the golden IntegerModel's metrics and its agreement with the PyTorch model."""
    run_dir = os.fspath(run_dir)
    run = load_run(run_dir)
    opts = run["options"]
    chosen, _ = final_stage(run_dir, stage)
    model = load_stage_model(run_dir, chosen.index)
    tokenizer = load_tokenizer(os.path.join(run_dir, "tokenizer"))
    gdir = os.fspath(glue_dir) if glue_dir is not None else opts["glue_dir"]
    tensors = load_split(run["task"], split, tokenizer, opts["max_len"], gdir)
    logits = predict(model, tensors, opts["eval_batch_size"])
    labels = tensors["labels"].numpy()
    out = {"run": os.path.abspath(run_dir), "task": run["task"], "split": split, "stage": chosen.name,
           "precision": chosen.precision, "examples": int(len(labels)),
           "metrics": glue_metrics(run["task"], logits, labels)}
    if integer is not None:
        from golden.artifact import load_artifact

        art = load_artifact(integer)
        if art.config.num_labels != model.num_labels or art.config.hidden != model.config.hidden_size:
            raise ValueError(f"{integer} does not hold this run's model (num_labels {art.config.num_labels}, "
                             f"hidden {art.config.hidden})")
        ilogits = _integer_logits(art, tensors, opts["eval_batch_size"])
        diff = np.abs(ilogits - logits)
        out["integer"] = {"artifact": os.path.abspath(os.fspath(integer)),
                          "metrics": glue_metrics(run["task"], ilogits, labels),
                          "max_logit_diff": float(diff.max()), "mean_logit_diff": float(diff.mean())}
        if model.num_labels > 1:
            out["integer"]["agreement"] = float(np.mean(ilogits.argmax(1) == logits.argmax(1)))
    return out


def tokenizer_reference(tokenizer, source: str, task: str, max_len: int) -> dict:
    """The artifact manifest's tokenizer reference: what to tokenize inputs with (and a vocabulary hash)."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    digest = hashlib.sha256("\n".join(w for w, _ in vocab).encode()).hexdigest()
    spec = get_task(task)
    return {"kind": "huggingface", "class": type(tokenizer).__name__, "source": source,
            "vocab_size": len(vocab), "vocab_sha256": digest,
            "do_lower_case": bool(getattr(tokenizer, "do_lower_case", False)), "max_len": max_len,
            "task": spec.name, "labels": list(spec.labels) if spec.labels else None}


def export_run(run_dir: str | os.PathLike, out_path: str | os.PathLike, stage: int | None = None,
               sample_size: int = 64):
    """Export the run's final (or given) stage best model to an artifact; numerics chosen on a dev sample."""
    from golden.version import __version__

    from .export import export

    run_dir = os.fspath(run_dir)
    run = load_run(run_dir)
    opts = run["options"]
    chosen, _ = final_stage(run_dir, stage)
    model = load_stage_model(run_dir, chosen.index)
    tokenizer = load_tokenizer(os.path.join(run_dir, "tokenizer"))
    dev = load_split(run["task"], "dev", tokenizer, opts["max_len"], opts["glue_dir"])
    sample = _trim({k: dev[k][:sample_size] for k in ("input_ids", "attention_mask", "token_type_ids")})
    ref = tokenizer_reference(tokenizer, run.get("tokenizer_source", ""), run["task"], opts["max_len"])
    return export(model, out_path, tokenizer_ref=ref, sample=sample,
                  producer=f"bitaccel {__version__} train run {os.path.basename(os.path.abspath(run_dir))} "
                           f"stage {chosen.name} ({opts['method']}, schedule {opts['schedule']})")
