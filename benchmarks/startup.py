"""Start-up of one LM generation job, per phase, against a plain load of the same model in the same run.

Workload: the demo config's language model (configs/demo.yaml: tiny OPT, 2 layers, 128 wide, BPE
of 4000 tokens on wikivital), randomly initialised (no base pretraining), 32 training blocks,
1 epoch, so that the generation's own work stays small. Generation 0 and 1 run once through
`collapse-hpc run` (local executor); then generation 1's job is run again --repeats times, each a
fresh process started here as the launcher would (`UnitJob()(run, "lm", variant, 1)`), and its
phases are read from the job's manifest (`startup_seconds`, the same figures as the job log's
"start-up:" line) plus `launch`: from the process's start to the engine handing the unit to the
experiment (interpreter, our and submitit's imports, config, verifying generation 0).

Baseline, in a fresh process of the same run: `import torch, transformers`, then the same
tokenizer and generation 0's saved model loaded with AutoTokenizer / AutoModelForCausalLM: what
any script that uses this model pays. Start-up = launch + the phases the job logs ("start-up:")
except the first optimizer step (compilation and first-step work: printed on its own line).

  python benchmarks/startup.py              last line: startup_beyond_plain_load_s: <ours - plain>
  python benchmarks/startup.py --repeats 3  the median over 3 job starts
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANT = "replace-p0-s0"
PHASES = ("launch", "imports", "process_group", "tokenizer", "model_load", "deepspeed_import", "deepspeed_init")

CONFIG = """name: startup
generations: 2
seeds: [0]
regimes: [{{name: replace, keep_fraction: 0.0}}]
executor: local
data_dir: {data_dir}
lm: {{dataset: wikivital, model: tiny, pretrained: false, vocab_size: 4000, hidden_size: 128, layers: 2,
      heads: 4, ffn_size: 512, max_train_blocks: 32, max_eval_blocks: 32, epochs: 1, batch_size: 32,
      micro_batch_size: 32, sample_batch_size: 32}}
"""

JOB = "import sys; from collapse_hpc.launch.job import UnitJob; UnitJob()(sys.argv[1], 'lm', sys.argv[2], 1)"

PLAIN = """import sys, time
t0 = time.perf_counter()
import torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
t1 = time.perf_counter()
AutoTokenizer.from_pretrained(sys.argv[1])
t2 = time.perf_counter()
AutoModelForCausalLM.from_pretrained(sys.argv[2], dtype=torch.float32)
t3 = time.perf_counter()
print(time.time(), t1 - t0, t2 - t1, t3 - t2)
"""


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}


def job_start(run: Path) -> dict:
    """Generation 1's job started afresh: its start-up phases (seconds), launch included."""
    unit = run / "lm" / VARIANT / "gen_001"
    shutil.rmtree(unit)
    spawned = time.time()
    proc = subprocess.run([sys.executable, "-c", JOB, str(run), VARIANT], cwd=REPO, env=_env(),
                          capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"error: the generation job failed:\n{proc.stderr[-3000:]}")
    manifest = json.loads((unit / "manifest.json").read_text())
    return {"launch": manifest["started"] - spawned, **manifest["startup_seconds"]}


def plain_load(run: Path, data_dir: Path) -> dict:
    """import torch, transformers and load the same tokenizer and model, in a fresh process."""
    spawned = time.time()
    proc = subprocess.run([sys.executable, "-c", PLAIN, str(data_dir / "wikivital" / "tokenizer-bpe4000"),
                           str(run / "lm" / VARIANT / "gen_000" / "model")], cwd=REPO, env=_env(),
                          capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"error: the plain load failed:\n{proc.stderr[-3000:]}")
    done, imports, tokenizer, model = map(float, proc.stdout.split()[-4:])
    return {"total": done - spawned, "imports": imports, "tokenizer": tokenizer, "model_load": model}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="data", help="prepared data (wikivital: prepared here if missing)")
    p.add_argument("--repeats", type=int, default=2, help="fresh starts of generation 1's job (the median)")
    args = p.parse_args()
    data_dir = Path(args.data_dir).absolute()
    if not (data_dir / "wikivital" / "train.parquet").is_file():
        sys.path.insert(0, str(REPO))
        from collapse_hpc.experiments.lm.data import prepare_wikivital

        prepare_wikivital(data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        config, run = Path(tmp) / "startup.yaml", Path(tmp) / "run"
        config.write_text(CONFIG.format(data_dir=json.dumps(str(data_dir))))
        proc = subprocess.run([sys.executable, "-m", "collapse_hpc", "run", str(config), "--run", str(run)],
                              cwd=REPO, env=_env(), capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"error: the chain failed:\n{proc.stderr[-3000:]}")
        runs, plains = [], []
        for _ in range(args.repeats):  # interleaved: a busy moment of the machine hits both alike
            runs.append(job_start(run))
            plains.append(plain_load(run, data_dir))
    ours = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in (*PHASES, "first_step")}
    plain = {k: statistics.median(r[k] for r in plains) for k in plains[0]}
    import torch
    import transformers

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"{os.cpu_count()} cpus, no GPU"
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, python {sys.version.split()[0]}, "
          f"{device}; median of {args.repeats} starts of generation 1")
    for k in PHASES:
        print(f"  {k:17s} {ours[k]:6.2f} s")
    startup = sum(ours[k] for k in PHASES)
    print(f"start-up (above)    {startup:6.2f} s; first step (compiles with lm.compile) {ours['first_step']:.2f} s")
    print(f"plain load          {plain['total']:6.2f} s (process start to model loaded; imports "
          f"{plain['imports']:.2f}, tokenizer {plain['tokenizer']:.2f}, model {plain['model_load']:.2f})")
    print(f"ratio_to_plain_load: {startup / plain['total']:.2f}")
    print(f"startup_beyond_plain_load_s: {startup - plain['total']:.2f}")


if __name__ == "__main__":
    main()
