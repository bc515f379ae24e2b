"""The `lm:` section of a config: data, model, training and evaluation knobs of the language model.

Data, model and training knobs come first; those of the chain (sampling, initialisation,
curation) below the marked line. Regimes, seeds and generations come from the Section base.
No heavy imports here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collapse_hpc.config import FILE_NAME_CHARS, Section, knob
from collapse_hpc.experiments.lm.distributed import COLLECTIVE_TIMEOUT_S
from collapse_hpc.experiments.lm.sample import GRAPHS, PRECISIONS

# Derived from batch_size, micro_batch_size and the ranks: the data order depends on them.
DERIVED_DEEPSPEED_KEYS = ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps")


@dataclass
class LMConfig(Section):
    # --- data
    dataset: str = knob("wikivital", "prepared data set under data/ (wikivital, wikitext2, or a --from name)",
                        chars=FILE_NAME_CHARS)
    block_size: int = knob(64, "tokens per training block (the reference: 64)", min=2)
    max_train_blocks: int = knob(0, "use only the first N real training blocks (0: all)", min=0)
    max_eval_blocks: int = knob(0, "use only the first N validation/test blocks (0: all)", min=0)
    block_grouping: str = knob("corpus", "corpus: all texts of a split concatenated, then cut into blocks (one "
                                         "remainder dropped); reference: concatenated and cut per batch of 1000 "
                                         "rows, each batch's remainder dropped (datasets.map(group_texts, "
                                         "batched=True) in one process); reference-4: the same per batch of 1000 "
                                         "rows of each of 4 contiguous row shards (the authors' dataset.py: "
                                         "datasets.map(..., num_proc=4)), computed in one process",
                               choices=("corpus", "reference", "reference-4"))

    # --- model
    model: str = knob("tiny", "causal LM: a hub tag (facebook/opt-125m, gpt2, ...), a save_pretrained folder (its "
                      "config.json, weights and tokenizer; an absolute path) or 'tiny' (random OPT for CPU)")
    pretrained: bool = knob(True, "start from pretrained weights (tiny: a base pretrained once on the "
                                  "train split and cached under data/<dataset>/base/)")
    tokenizer: str | None = knob(None, "tokenizer tag or folder (default: the model's; "
                                       "tiny: BPE trained on the train split)")
    vocab_size: int = knob(8000, "tiny: vocabulary of the byte-level BPE trained on the train split", min=300)
    hidden_size: int = knob(128, "tiny: hidden size", min=8)
    layers: int = knob(2, "tiny: transformer layers", min=1)
    heads: int = knob(4, "tiny: attention heads (must divide hidden_size)", min=1)
    ffn_size: int = knob(512, "tiny: feed-forward width", min=8)
    dropout: float = knob(0.1, "tiny: dropout (OPT's default 0.1)", min=0.0, max=1.0)
    pretrain_epochs: int = knob(1, "tiny + pretrained: epochs of base pretraining on the real train split", min=1)
    pretrain_lr: float = knob(1e-3, "tiny + pretrained: peak learning rate of base pretraining", gt=0)
    pretrain_blocks: int = knob(0, "tiny + pretrained: pretrain on at most N train blocks, taken after the "
                                   "first max_train_blocks (the chain's real blocks; 0: all that remain)", min=0)
    pretrain_batch_size: int = knob(32, "tiny + pretrained: batch size of base pretraining", min=1)

    # --- training one generation (DeepSpeed)
    epochs: int = knob(5, "fine-tuning epochs per generation (the reference: 5)", min=1)
    lr: float = knob(2e-5, "peak learning rate (AdamW; cosine decay per epoch to lr_min)", gt=0)
    lr_min: float = knob(1e-6, "learning rate at the end of the cosine (eta_min)", min=0)
    weight_decay: float = knob(0.01, "AdamW weight decay (torch's default)", min=0)
    batch_size: int = knob(128, "global batch in blocks, over all ranks (gradient accumulation as needed)", min=1)
    micro_batch_size: int = knob(16, "blocks per forward pass per rank", min=1, hashed=False, exact=False)
    zero_stage: int = knob(0, "DeepSpeed ZeRO stage", choices=(0, 1, 2, 3))
    deepspeed: dict[str, Any] | str | None = knob(
        None, "DeepSpeed config merged over the generated one (offload, monitors, ...): a mapping, or a JSON "
              "file's path (read when the config loads; the run keeps its contents); its batch keys are refused: "
              "they follow from batch_size, micro_batch_size and ranks")
    fused_adam: bool = knob(False, "DeepSpeed's fused AdamW (compiles a CUDA op) instead of torch's",
                            hashed=False, exact=False)
    precision: str = knob("auto", "auto (bf16-mixed on GPU, fp32 on CPU); bf16-mixed: torch autocast over fp32 "
                                  "weights; bf16: DeepSpeed's bf16 weights with fp32 master copies and fp32 "
                                  "gradient sums (ZeRO 0 runs as 1); fp32. The published model is fp32. Every "
                                  "checkpoint loads as fp32, whatever dtype it was saved in",
                          choices=("auto", "bf16-mixed", "bf16", "fp32"))
    compile: bool = knob(False, "torch.compile the training step's model (GPU: fewer kernel launches for small "
                                "models; all blocks have one shape, so it compiles once); its cache lives in the "
                                "run folder (.compile-cache/)", hashed=False, exact=False)
    compile_mode: str = knob("default", "compile: torch.compile's mode: default, reduce-overhead (CUDA graphs of "
                                        "the step) or max-autotune-no-cudagraphs",
                             choices=("default", "reduce-overhead", "max-autotune-no-cudagraphs"),
                             hashed=False, exact=False)
    compile_backend: str = knob("inductor", "compile and sample_compile: torch.compile's backend: inductor "
                                            "(generated kernels; needs a C compiler on CPU) or aot_eager (traced, "
                                            "no code generation)",
                                choices=("inductor", "aot_eager"), hashed=False, exact=False)
    loss_chunk_tokens: int = knob(2048, "training loss from the last hidden states in chunks of this many tokens "
                                        "(the whole batch's vocabulary logits never exist at once; the same value "
                                        "and gradients as HF's loss up to rounding); 0: HF's loss over the whole "
                                        "batch's logits. OPT and GPT-2 (every ZeRO stage); others use HF's", min=0,
                                 hashed=False, exact=False)
    checkpoint_every_steps: int = knob(0, "also checkpoint every K optimizer steps (0: each epoch only)", min=0,
                                       hashed=False)
    eval_batch_size: int = knob(64, "blocks per forward pass when scoring perplexity and validation loss (no "
                                    "grad, no KV cache, the vocabulary logits a chunk at a time: on a GPU it can "
                                    "be several times micro_batch_size)", min=1, hashed=False, exact=False)
    eval_precision: str = knob("fp32", "GPU: precision of every perplexity and validation loss (fp32, or bf16 "
                                       "autocast); CPU always scores in fp32", choices=("fp32", "bf16"))

    # ------------------------------------------------------------------------------------------
    # The chain: decoding strategies, beams, repetition_penalty, sampling batch size,
    # init: gen0 | pretrained | previous, ...
    init: str = knob("gen0", "weights each generation g >= 1 starts from: gen0 (the paper: generation 0's model, "
                             "the best on the real data by validation loss), pretrained (the initial model) or "
                             "previous (generation g-1's)", choices=("gen0", "pretrained", "previous"))
    prompts: str = knob("real", "blocks each generation continues into the next one's data: real (the paper: "
                                "every real training block, every generation) or train_set (its own training "
                                "set, so the prompts drift too)", choices=("real", "train_set"))
    decoding: list[str] = knob(["beam"], "how the next generation's data is sampled, one chain per entry: beam "
                               "(the paper), greedy, sampling (pure), temperature, top_k, top_p, min_p; a "
                               "sampling one may name its value (top_p:0.9), else it takes its knob below",
                               unique=True)
    num_beams: int = knob(5, "beam: beams (the paper: 5)", min=1)
    repetition_penalty: float = knob(3.0, "HF repetition penalty on seen tokens, every strategy (the paper: "
                                          "3.0; 1.0: off)", gt=0)
    temperature: float = knob(0.7, "the temperature strategy's temperature (0: greedy)", min=0)
    top_k: int = knob(50, "the top_k strategy: sample from the k most likely tokens", min=1)
    top_p: float = knob(0.95, "the top_p strategy: sample from the smallest set of tokens with this mass",
                        gt=0, max=1)
    min_p: float = knob(0.1, "the min_p strategy: sample from tokens at least this fraction as likely as "
                             "the most likely one", gt=0, max=1)
    verifier: str = knob("gen0", "verifier-filter regime: the model whose perplexity scores a generated block "
                                 "(lower passes): gen0, the generation-0 model trained on real data; base, the "
                                 "model before any training on the chain's data", choices=("gen0", "base"))
    sample_precision: str = knob("fp32", "dtype of the weights that sample the next generation's data: fp32 "
                                         "(the paper; the same tokens as HF generate) or bf16 (GPU: faster; near-"
                                         "ties between tokens may break the other way)", choices=PRECISIONS)
    sample_graphs: str = knob("auto", "the OPT decoder's step as a CUDA graph, captured once per (batch, beams) "
                                      "shape and replayed every step: auto (on where sampling runs on CUDA), on, "
                                      "off. A CPU has no graphs: there, on runs the same fixed-buffer step "
                                      "uncaptured (over the whole cache: slower than off, which attends only to "
                                      "the slots written so far). Manifest and shards record the step that ran "
                                      "(decoding.step)", choices=GRAPHS, hashed=False, exact=False)
    sample_compile: bool = knob(False, "torch.compile the OPT decoder's fixed-shape step (dynamic=False, "
                                       "compile_backend; inside the CUDA graph where graphs are on): compiled "
                                       "once per (batch, beams) shape, its cache in the run folder",
                            hashed=False, exact=False)
    sample_batch_size: int = knob(128, "prompts per sampling batch per rank; one shard file each", min=1)
    ranks: int = knob(1, "processes (DeepSpeed ranks) per generation: GPUs of the job, or CPU processes; only a "
                         "speed knob: the same batches, dropout and numbers on any count (as long as "
                         "micro_batch_size divides batch_size / ranks)", min=1, hashed=False, exact=False)
    collective_timeout_s: float = knob(COLLECTIVE_TIMEOUT_S, "seconds a rank waits in a collective (all-reduce, "
                                       "barrier) for its peers: a peer alive but hung then ends the unit, named in "
                                       "its FAILED line, and the same command resumes it (DeepSpeed's default: "
                                       "1800); raise it where one rank works alone longer (a large model's save)",
                                       gt=0, hashed=False)
    rare_fraction: float = knob(0.1, "metrics: a token type is rare if it is among the least frequent types "
                                     "of the whole real train split that together carry at most this share of "
                                     "its tokens (ties by token id; types never seen there are rare)",
                                gt=0, max=1)
    frequent_fraction: float = knob(0.5, "metrics: a token type is frequent if it is among the most frequent "
                                         "types that together carry at most this share of the real train "
                                         "tokens; the rest is the middle", gt=0, max=1)
    sample_from: str = knob("best", "weights that write the next generation's data: best (the project brief's "
                                    "workflow: the epoch with the lowest validation loss) or last (the authors' "
                                    "main.py training and generating in one call: the weights after the last "
                                    "epoch, saved to model_last/); every perplexity is scored with best",
                            choices=("best", "last"))
    keep_models: str = knob("all", "the weights a finished generation keeps: all (model/, and model_last/ with "
                                   "sample_from: last) or needed (only those a later generation reads: generation "
                                   "0's model/, which scores every later generation's text, and with init: "
                                   "previous every model/; the others go before the manifest, which keeps their "
                                   "fingerprints). OPT-125M: 0.5 GB a generation",
                            choices=("all", "needed"), hashed=False)

    def validate(self):
        from collapse_hpc.experiments.lm.sample import labels

        if not self.decoding:
            raise ValueError("decoding: give at least one strategy")
        names = labels(self)  # raises ValueError on a bad strategy
        if len(set(names)) < len(names):
            raise ValueError(f"decoding: a strategy is listed twice ({', '.join(names)})")
        if self.rare_fraction + self.frequent_fraction > 1:
            raise ValueError(f"rare_fraction ({self.rare_fraction}) + frequent_fraction ({self.frequent_fraction}) "
                             f"must not exceed 1: no token is both rare and frequent")
        if self.batch_size % self.ranks:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of ranks ({self.ranks}): "
                             "every rank takes an equal share of the global batch")
        if self.lr_min > self.lr:
            raise ValueError(f"lr_min ({self.lr_min}) must not exceed lr ({self.lr})")
        if self.model == "tiny" and self.hidden_size % self.heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be a multiple of heads ({self.heads})")
        if isinstance(self.deepspeed, str):
            self.deepspeed = _read_json(self.deepspeed)
        derived = [k for k in DERIVED_DEEPSPEED_KEYS if k in (self.deepspeed or {})]
        if derived:
            raise ValueError(f"deepspeed: {', '.join(derived)} follow from batch_size, micro_batch_size and "
                             "the ranks; set those instead")


def _read_json(path: str) -> dict:
    try:
        value = json.loads(Path(path).read_text())
    except OSError as e:
        raise ValueError(f"deepspeed: cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise ValueError(f"deepspeed: {path} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise ValueError(f"deepspeed: {path} holds {type(value).__name__}, not a mapping of DeepSpeed keys")
    return value
