"""The plan of a training run: the schedule string, the methods (BiT Table 2 ladder), the stages, the options.

See model/train.py for what each stage does and docs/training.md for the recipe.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from .data import get_task
from .quant import ACT_BITS, WEIGHT_BITS

#: The span-extraction task (SQuAD v1.1, model/squad_data.py); every other task is a classification (model/data.py).
SQUAD = "squad"

#: Learning rate of every alpha (official BiT code: --clip_lr 1e-4, weight decay 0, its own group).
ALPHA_LR = 1e-4
#: Epochs of the final integer fine-tune when the run sets none (capped by max_steps like every stage).
INT_EPOCHS = 1


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


# ----------------------------------------------------------------------------- task defaults
@dataclass(frozen=True)
class SpanTaskSpec:
    """SQuAD v1.1's training defaults, the fields of model.data.TaskSpec that training reads plus the
    sliding-window sizes (tokens). BiT gives no SQuAD recipe: epochs, batch size and max_len / doc_stride /
    max_query_len are BERT's run_squad.py defaults (2 epochs, 32, 384 / 128 / 64), the learning rate the GLUE
    default of this project (1e-4, BiT A.6); the dev metric is F1 (%)."""
    name: str = SQUAD
    epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 1e-4
    max_len: int = 384
    doc_stride: int = 128
    max_query_len: int = 64
    splits: tuple[str, ...] = ("train", "dev")
    main_metric: str = "f1"


def is_span_task(task: str) -> bool:
    """Whether `task` is span extraction (squad) rather than a classification / regression task."""
    return isinstance(task, str) and task.strip().lower() == SQUAD


def task_spec(task: str):
    """SpanTaskSpec for squad, else model.data.get_task(task) (ValueError for an unknown task)."""
    return SpanTaskSpec() if is_span_task(task) else get_task(task)


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
    squad_dir: str | None = None          # squad: the folder of train-v1.1.json and dev-v1.1.json
    doc_stride: int | None = None         # squad: context tokens shared by consecutive windows
    max_query_len: int | None = None      # squad: question tokens kept

    def resolve(self) -> "Options":
        """A copy with task defaults filled in and every value checked (ValueError)."""
        spec = task_spec(self.task)
        o = dataclasses.replace(self, task=spec.name)
        span = is_span_task(o.task)
        if span:
            if has_integer_stage(o.schedule):
                raise ValueError(f"schedule {o.schedule!r}: the 'int' stage is not supported for squad yet "
                                 "(span models have no integer-exact path)")
            if o.squad_dir is None:
                raise ValueError("squad needs the SQuAD folder (train-v1.1.json, dev-v1.1.json): pass --squad-dir")
            o.doc_stride = spec.doc_stride if o.doc_stride is None else o.doc_stride
            o.max_query_len = spec.max_query_len if o.max_query_len is None else o.max_query_len
        else:
            given = [n for n in ("squad_dir", "doc_stride", "max_query_len") if getattr(o, n) is not None]
            if given:
                raise ValueError(f"{', '.join(given)}: only for --task squad, not {o.task}")
        o.epochs = spec.epochs if o.epochs is None else o.epochs
        o.batch_size = spec.batch_size if o.batch_size is None else o.batch_size
        o.lr = spec.learning_rate if o.lr is None else float(o.lr)
        o.alpha_lr = ALPHA_LR if o.alpha_lr is None else float(o.alpha_lr)
        o.max_len = spec.max_len if o.max_len is None else o.max_len
        plan_stages(o.schedule, o.method, o.progressive)
        for name in ("epochs", "batch_size", "max_len", "eval_batch_size") + (("doc_stride", "max_query_len")
                                                                              if span else ()):
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
        if span and o.max_len - o.max_query_len - 3 <= o.doc_stride:
            raise ValueError(f"max_len {o.max_len} leaves {o.max_len - o.max_query_len - 3} context tokens after "
                             f"a {o.max_query_len}-token question; doc_stride {o.doc_stride} must be smaller")
        if not (o.lr > 0 and o.alpha_lr > 0):
            raise ValueError(f"learning rates must be > 0, not lr={o.lr} alpha_lr={o.alpha_lr}")
        if not 0 <= o.warmup < 1:
            raise ValueError(f"warmup must be a fraction in [0, 1), not {o.warmup}")
        if o.clip < 0 or o.weight_decay < 0:
            raise ValueError(f"clip and weight_decay must be >= 0, not {o.clip}, {o.weight_decay}")
        o.model = os.path.abspath(os.fspath(o.model))
        o.glue_dir = None if o.glue_dir is None else os.path.abspath(os.fspath(o.glue_dir))
        o.squad_dir = None if o.squad_dir is None else os.path.abspath(os.fspath(o.squad_dir))
        return o
