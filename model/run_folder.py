"""The run folder of model/train.py: run.json, metrics.jsonl, checkpoint.pt and stages/K-wBaA/{model, result.json}.

Layout and contents: the module doc of model/train.py.
"""
from __future__ import annotations

import json
import os

from .plan import Stage

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
RESULT_FILE = "result.json"


# ----------------------------------------------------------------------------- run folder
def stage_path(run_dir: str, stage: Stage) -> str:
    return os.path.join(run_dir, "stages", stage.name)


def write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_metrics(run_dir: str, record: dict) -> None:
    """Append one JSON line to metrics.jsonl."""
    with open(os.path.join(run_dir, METRICS_FILE), "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def truncate_metrics(run_dir: str, stage: int, step: int) -> None:
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
    path = os.path.join(stage_path(run_dir, stage), RESULT_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def is_run(path: str) -> bool:
    return os.path.isfile(os.path.join(path, RUN_FILE))


def dev_metrics_at(run_dir: str, stage: Stage, step: int | None) -> dict | None:
    """The dev metrics logged for `stage` at `step` (the best model's)."""
    if step is None:
        return None
    for rec in read_metrics(run_dir):
        if rec["kind"] == "eval" and rec["stage"] == stage.index and rec["step"] == step:
            return rec["metrics"]
    return None
