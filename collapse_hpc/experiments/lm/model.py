"""Models: a hub causal LM (facebook/opt-125m, gpt2, ...) or the `tiny` preset for CPU.

- A hub tag loads through the HF cache: `pretrained: true` -> AutoModelForCausalLM.from_pretrained,
  `pretrained: false` -> the same architecture, randomly initialised.
- Every model is loaded or built in float32, whatever its config.json declares (facebook/opt-125m's
  says float16, and transformers 5 honours that unless told otherwise): float32 are the master
  weights training updates; compute dtypes are the precision knobs' business (train.py, evaluate.py).
- `tiny` is a randomly initialised OPT (sizes from the config) over the data set's local BPE.
  With `pretrained: true` it is first pretrained once on real train blocks (budget:
  pretrain_epochs / pretrain_lr / pretrain_blocks) and cached under
  data/<dataset>/base/<fingerprint>/: the offline stand-in for pretrained OPT-125M. Those blocks
  follow the first `max_train_blocks` (every generation's real training blocks and prompts), so
  the base has never seen what the chain fine-tunes on; with max_train_blocks 0 (all blocks) no
  block is left over, the base is pretrained on the training blocks themselves, and base.json in
  its folder (and generation 0's manifest, `initial_model`) says so.

API:
- build_model(cfg, tokenizer, data_dir, samples) -> model   the initial model of a generation
- initial_model(cfg, data_dir, tokenizer) -> dict   what that initial model is (for reports)
- pretrain_range(blocks, cfg) -> (start, stop, disjoint)   the tiny base's real train blocks
- load_model(dir) -> model                          a save_pretrained folder (safetensors)
- model_fingerprint(dir) -> str                     sha256 of its safetensors files (16 hex)
- check_vocab(model, tokenizer)                     UserError if the tokenizer does not fit the model
- check_ids(model, ids)                             UserError if token ids exceed the embedding
- check_fits(cfg, data_dir, where, seen)            before a run: UserError if the model has too few positions for
                                                    lm.block_size, or too few embedding rows for the tokenizer;
                                                    a warning where a pretrained model reads another's token ids
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import sys
from pathlib import Path
from typing import NamedTuple

from collapse_hpc.errors import UserError, first_line
from collapse_hpc.experiments.lm.hub import local_config
from collapse_hpc.logs import first_few
from collapse_hpc.store import atomic
from collapse_hpc.store.lock import file_lock
from collapse_hpc.store.reads import NotRead, read_text, refused_read, safetensors_open


MODEL_KEPT = "kept as it is; the command goes on with it"  # a model file the file system would not read

# hub models whose parameter count is known without their config.json (launch/estimate.py's
# measured rates are for these): 4 bytes each in fp32
PARAMETERS = {"facebook/opt-125m": 125_239_296}


def parameters(cfg) -> int | None:
    """Parameters of the config's model, without loading weights: the tiny OPT's from its knobs
    (tiny_config's shapes, exact where the tokenizer has vocab_size tokens); a hub model's from
    PARAMETERS, else from its config.json where one is here (a local folder, the HF cache), else
    from the size its name states (opt-1.3b: 1.3B); None: unknown (gpt2, uncached)."""
    if cfg.model == "tiny":
        h, f = cfg.hidden_size, cfg.ffn_size
        positions = max(256, 2 * cfg.block_size) + 2  # OPT's learned positions start at offset 2
        layer = 4 * (h * h + h) + (h * f + f) + (f * h + h) + 2 * 2 * h  # attention, feed-forward, 2 norms
        return cfg.vocab_size * h + positions * h + cfg.layers * layer + 2 * h  # the output head is tied
    if cfg.model in PARAMETERS:
        return PARAMETERS[cfg.model]
    folder = local_config(cfg.model)
    counted = _counted(str(folder)) if folder is not None else None
    if counted is not None:
        return counted
    size = re.search(r"(\d+(?:\.\d+)?)([mb])(?![a-z])", cfg.model.rstrip("/").rsplit("/", 1)[-1].lower())
    return int(float(size.group(1)) * (1e6 if size.group(2) == "m" else 1e9)) if size else None


class Shape(NamedTuple):
    kind: str  # config.json's model_type: opt, gpt2, ...
    vocab: int
    hidden: int
    layers: int
    ffn: int


CHUNKED_LOSS = ("opt", "gpt2")  # model types whose last hidden states are what their output layer multiplies

# hub models whose shapes are known without their config.json
SHAPES = {"facebook/opt-125m": Shape("opt", 50272, 768, 12, 3072)}


def shape(cfg) -> Shape | None:
    """The shapes of the config's model, without loading it: the tiny OPT's knobs, SHAPES, else its
    config.json where one is here; None: unknown."""
    if cfg.model == "tiny":
        return Shape("opt", cfg.vocab_size, cfg.hidden_size, cfg.layers, cfg.ffn_size)
    if cfg.model in SHAPES:
        return SHAPES[cfg.model]
    folder = local_config(cfg.model)
    return _shape(str(folder)) if folder is not None else None


def saved_shape(folder: Path) -> Shape | None:
    """The shapes a saved model's config.json declares; None: missing, or not a model's config."""
    return _shape(str(folder))


def saved_config(folder: Path) -> dict:
    """A saved model's config.json as a mapping ({} where it is missing or not one), read once per process
    (saved_shape's read, a model's origin): NotRead where the file system refuses the read, the model kept."""
    return dict(_config(str(folder)))


@functools.lru_cache(maxsize=None)
def _config(folder: str) -> dict:
    try:
        config = json.loads(read_text(Path(folder) / "config.json", "model file", MODEL_KEPT,
                                      kept=(FileNotFoundError, IsADirectoryError)))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


@functools.lru_cache(maxsize=None)
def _shape(folder: str) -> Shape | None:
    c = _config(folder)
    try:
        h = int(c.get("hidden_size") or c["n_embd"])  # GPT-2 names them n_embd, n_layer, n_inner
        return Shape(str(c.get("model_type", "")), int(c["vocab_size"]), h,
                     int(c.get("num_hidden_layers") or c["n_layer"]),
                     int(c.get("ffn_dim") or c.get("intermediate_size") or c.get("n_inner") or 4 * h))
    except (ValueError, KeyError, TypeError):
        return None


@functools.lru_cache(maxsize=None)
def _counted(folder: str) -> int | None:
    """Parameters of the causal LM that `folder`'s config.json describes, built on the meta device
    (shapes only: no memory, no weights read); None where transformers cannot build it."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except (OSError, ValueError, KeyError, TypeError):  # a config this transformers cannot read or build
        return None
    return sum(p.numel() for p in model.parameters())  # tied weights once


def weights_bytes(cfg, copies: int = 1) -> int | None:
    """Bytes of `copies` saved copies of the fp32 weights (model/, model_last/); None: unknown."""
    n = parameters(cfg)
    return None if n is None else 4 * n * copies


def tiny_config(cfg, tokenizer):
    from transformers import OPTConfig

    return OPTConfig(vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, word_embed_proj_dim=cfg.hidden_size,
                     num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, ffn_dim=cfg.ffn_size,
                     max_position_embeddings=max(256, 2 * cfg.block_size), dropout=cfg.dropout,
                     attention_dropout=0.0, pad_token_id=tokenizer.pad_token_id,
                     bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)


def random_model(config, seed: int = 0):
    """A randomly initialised causal LM, the same for the same config and seed."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def skip_layerdrop_draws(model) -> None:
    """transformers 5.17's OPT decoder draws LayerDrop's number for every layer in training even at
    layerdrop 0 (a host sync each, and a graph break each under torch.compile); 5.24 draws only above
    0. At 0 the decoder's own training flag stays off, and so it draws nothing; its layers keep
    theirs (dropout as before)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    if getattr(decoder, "layerdrop", None) != 0.0:
        return

    def train(mode: bool = True):
        for child in decoder.children():
            child.train(mode)
        decoder.training = False
        return decoder

    decoder.train = train
    decoder.train(model.training)


def build_model(cfg, tokenizer, data_dir: Path, samples: bool = True):
    """The initial model; a hub model or folder is checked against lm.block_size (check_positions: whether the
    unit `samples` too), as the run's check could not where it was not here when the run began."""
    if cfg.model == "tiny":
        if not cfg.pretrained:
            model = random_model(tiny_config(cfg, tokenizer))
        else:
            model = load_model(tiny_base(cfg, tokenizer, data_dir))
    else:
        model = _hub_model(cfg.model, cfg.pretrained)
        check_positions("lm.block_size", cfg, model.config.to_dict(), samples)
    check_vocab(model, tokenizer)
    return model


def _hub_model(tag: str, pretrained: bool):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from collapse_hpc.experiments.lm.hub import hub_offline

    from safetensors import SafetensorError

    offline = hub_offline()
    try:
        if pretrained:
            return AutoModelForCausalLM.from_pretrained(tag, dtype=torch.float32)
        return random_model(AutoConfig.from_pretrained(tag))
    except SafetensorError as e:  # found, but its weights do not read (a download or copy cut short)
        raise UserError(f"model {tag!r}: its weights do not read: {first_line(e, 160)}") from None
    except (OSError, ValueError) as e:
        where = "a folder that cannot be loaded" if Path(tag).expanduser().is_dir() else \
            "not in the HF cache and the hub is offline (HF_HUB_OFFLINE=1)" if offline else \
            "not found in the HF cache or on the hub"
        raise UserError(f"model {tag!r}: {where}: {first_line(e, 160)}") from None


def load_model(folder):
    """A save_pretrained folder's model, in float32 whatever dtype it was saved in."""
    import torch
    from transformers import AutoModelForCausalLM

    folder = Path(folder)
    if not (folder / "config.json").is_file() or not list(folder.glob("*.safetensors")):
        raise UserError(f"{folder}: no saved model (config.json and *.safetensors expected)")
    from safetensors import SafetensorError

    try:
        return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    except (OSError, ValueError, RuntimeError, SafetensorError) as e:
        raise UserError(f"{folder}: model cannot be loaded: {first_line(e, 160)}") from None


def check_weights(key: str, tag: str, pretrained: bool = True) -> None:
    """UserError where `tag` (config key `key`) is a folder whose saved model does not read: a file cut
    short by a copy or a full disk failed every job at its load, after the run had begun. So did a folder,
    or the HF cache's copy of a hub tag with the hub offline, whose weights are not all there (a download
    cut short, a copy of config.json alone): when the weights are loaded (`pretrained`)."""
    from collapse_hpc.experiments.lm.hub import hub_offline

    folder = Path(tag).expanduser()
    cached = None if folder.is_dir() or not hub_offline() else local_config(tag)  # online, a load fills it
    if pretrained and (folder.is_dir() or cached) and (lacks := missing_weights(cached or folder)):
        where = f"the HF cache's copy of {tag!r} ({cached})" if cached else f"the model folder {folder}"
        raise UserError(f"{key}: {where} lacks {lacks}; copy or download the model whole"
                        + (f" (hf download {tag}, where the hub is reachable)" if cached else ""))
    if folder.is_dir() and list(folder.glob("*.safetensors")) and (why := unreadable(folder, "the run starts from it")):
        raise UserError(f"{key}: the model in {folder} {why}")


WEIGHTS = ("*.safetensors", "pytorch_model*.bin")  # what from_pretrained loads
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")  # a sharded model's file list


def missing_weights(folder: Path) -> str | None:
    """What of a model's weight files is not in `folder` (a dangling link of the HF cache is not there):
    the shards its index lists, or any weights at all; None where they are all there."""
    index = next((folder / i for i in WEIGHT_INDEXES if (folder / i).is_file()), None)
    if index is not None:
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            if refused_read(e):  # says nothing of the model: not one to copy or download again
                raise NotRead(f"model file {index}", e, MODEL_KEPT) from None
            return f"a readable {index.name} ({type(e).__name__}: {str(e)[:80]})"
        gone = [s for s in shards if not (folder / s).is_file()]
        return f"{len(gone)} of the {len(shards)} shards {index.name} lists ({first_few(gone, 1)})" if gone else None
    if any(p.is_file() for pattern in WEIGHTS for p in folder.glob(pattern)):
        return None
    return "its weights (model.safetensors or pytorch_model.bin)"


def unreadable(folder: Path, then: str) -> str | None:
    """Why a saved model's files do not read (no config.json, or not JSON, a *.safetensors file's header
    or length not what it says), reading no weights; None where they read. A read the file system refuses
    says nothing of the bytes: NotRead naming the file, `then` what goes on from them once it reads."""
    from safetensors import SafetensorError

    folder = Path(folder)
    config, files = folder / "config.json", sorted(folder.glob("*.safetensors"))
    if not config.is_file():
        return "has no config.json"
    f = config
    try:
        json.loads(config.read_text())
        for f in files:
            with safetensors_open(f):
                pass
    except (OSError, ValueError, SafetensorError) as e:
        if refused_read(e):
            raise NotRead(f"model file {f}", e, then) from None
        return f"does not read ({first_line(e)})"
    return None if files else "has no *.safetensors file"


def weights_fingerprint(model) -> str:
    """sha256 of a model's parameters and buffers in memory (names, dtypes, values): which weights a
    generation started from, comparable with the same of any saved model once loaded."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy() if t.numel() else b"")  # the buffer itself, not a copy
    return h.hexdigest()[:16]


def saved_dtypes(folder) -> list[str]:
    """The dtypes of the tensors in a saved model's safetensors files (e.g. ['F32'])."""
    from safetensors import safe_open

    found = set()
    for p in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(p), "pt") as f:
            found.update(f.get_slice(k).get_dtype() for k in f.keys())
    return sorted(found)


def model_fingerprint(folder) -> str:
    h = hashlib.sha256()
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise UserError(f"{folder}: no *.safetensors to fingerprint")
    for p in files:
        with open(p, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    return h.hexdigest()[:16]


def check_vocab(model, tokenizer) -> None:
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise UserError(f"tokenizer has {len(tokenizer)} tokens but the model's embedding has only {rows} "
                        f"rows: tokenizer and model do not belong together")


# where a model type's config.json gives how many learned positions it embeds (rotary and ALiBi ones have no
# such bound); past the last one an embedding lookup fails (on a GPU, a device-side assert)
POSITIONS = {"opt": "max_position_embeddings", "gpt2": "n_positions", "gpt_neo": "max_position_embeddings"}


def check_positions(key: str, cfg, config: dict, samples: bool = True, model: str | None = None) -> None:
    """UserError where the model (`model`, else lm.model) of config.json `config` embeds fewer positions than a
    unit uses: a block of block_size tokens in training and scoring, and where it `samples`, a prompt block
    and as many new tokens."""
    name = POSITIONS.get(str(config.get("model_type", "")))
    has = config.get(name) if name else None
    need = 2 * cfg.block_size if samples else cfg.block_size
    if isinstance(has, int) and has < need:
        uses = (f"a generation uses {need}: a prompt block and as many new tokens when it samples" if samples
                else "a block is as many tokens")
        raise UserError(f"{key} {cfg.block_size}: the model {model or cfg.model} embeds {has} token positions "
                        f"({name} in its config.json), and {uses}; lower lm.block_size to "
                        f"{has * cfg.block_size // need} or less")


def check_fits(cfg, data_dir: Path, where, seen: set | None = None) -> None:
    """Before a run, where the model's config.json is here (a folder, the HF cache): its positions hold a
    generation's tokens (check_positions) and its embedding the tokenizer's. Either was said by the job alone,
    as a traceback in its log, after the run folder was made. `where(key)` names a config key; knobs already
    in `seen` are not checked again (a tokenizer is loaded), and these are added to it."""
    knobs = ("fits", cfg.model, cfg.tokenizer, cfg.block_size)
    folder = None if cfg.model == "tiny" or knobs in (seen or ()) else local_config(cfg.model)
    if seen is not None:
        seen.add(knobs)
    if folder is None:
        return
    check_positions(where("block_size"), cfg, saved_config(folder))
    check_embedding(where("tokenizer" if cfg.tokenizer else "model"), cfg, data_dir)


def check_embedding(key: str, cfg, data_dir: Path) -> None:
    """UserError where the tokenizer a unit loads (where it is here) has more tokens than the model's
    config.json gives its embedding rows (vocab_size)."""
    from collapse_hpc.experiments.lm.tokenizer import ready_tokenizer, tokenizer_tag

    rows = shape(cfg)
    tokenizer = ready_tokenizer(cfg, data_dir) if rows is not None else None
    if tokenizer is not None and len(tokenizer) > rows.vocab:
        # the tokenizer's folder, where it is a model's (or the HF cache's snapshot of one)
        why = _without_its_config(local_config(tokenizer_tag(cfg))) or ": tokenizer and model do not belong together"
        raise UserError(f"{key}: the tokenizer has {len(tokenizer)} tokens but the model's embedding has only "
                        f"{rows.vocab} rows (vocab_size in its config.json){why}")
    if tokenizer is not None:
        warn_not_its_own(key, cfg, tokenizer)


def warn_not_its_own(key: str, cfg, tokenizer) -> None:
    """One warning line where lm.tokenizer names a tokenizer whose vocabulary is not the one saved beside a
    pretrained model: its ids are read by the embedding trained for the other's, each as another token, and
    nothing fails. Not pretrained, the model learns its embedding from these ids: a choice, said nothing of."""
    from collapse_hpc.experiments.lm.tokenizer import other_vocabulary, own_tokenizer

    if not cfg.pretrained or not cfg.tokenizer or cfg.tokenizer == cfg.model:
        return
    own = own_tokenizer(cfg.model)
    if other_vocabulary(own, tokenizer):
        print(f"warning: {key}: {cfg.tokenizer} ({len(tokenizer)} tokens) is not the tokenizer the pretrained "
              f"model {cfg.model} was trained with ({len(own)} tokens, saved with it): the ids of {cfg.tokenizer} "
              f"are read by the embedding trained for the tokenizer of {cfg.model}, each as another token; name "
              f"its own tokenizer (or none), or set lm.pretrained false to train the model from scratch",
              file=sys.stderr)


def _without_its_config(folder: Path | None) -> str:
    """Why a model's own tokenizer may have a token too many: a copy of tokenizer.json without its
    tokenizer_config.json loads with the class's own special tokens (GPT-2's <|endoftext|>), added."""
    if folder is None or not (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file():
        return ""
    return (f": {folder} has tokenizer.json without its tokenizer_config.json, and without it transformers adds "
            f"special tokens of its own; copy tokenizer_config.json there too")


def check_ids(model, ids) -> None:
    rows = model.get_input_embeddings().num_embeddings
    top = int(ids.max()) if ids.size else -1
    if top >= rows:
        raise UserError(f"token id {top} does not fit the model's embedding of {rows} rows: "
                        f"the blocks were made with another tokenizer")


# ---------------------------------------------------------------- the tiny base model

def base_fingerprint(cfg, tokenizer) -> str:
    from collapse_hpc.experiments.lm.tokenizer import fingerprint

    keys = {k: getattr(cfg, k) for k in ("dataset", "block_size", "hidden_size", "layers", "heads", "ffn_size",
                                         "dropout", "pretrain_epochs", "pretrain_lr", "pretrain_blocks",
                                         "pretrain_batch_size", "lr_min", "weight_decay", "block_grouping",
                                         "max_train_blocks")}
    keys["tokenizer"] = fingerprint(tokenizer)
    return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:12]


def tiny_base(cfg, tokenizer, data_dir: Path) -> Path:
    """The pretrained tiny base model's folder, pretraining it first if no process has yet."""
    from collapse_hpc.store.cards import seal, sealed_files

    # reused only as its card recorded it (a changed byte would change every later run's results);
    # one without a card (unfinished, or from before cards) is built again
    folder = Path(data_dir) / cfg.dataset / "base" / base_fingerprint(cfg, tokenizer)
    if sealed_files(folder) is not None:
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(folder.parent / f".lock-{folder.name}") as locked:  # other ranks and chains wait, then reuse
        if locked:  # no other writer of it is alive: a temporary there is a killed one's
            atomic.sweep(folder.parent, folder.name)
        if sealed_files(folder) is not None:
            return folder
        from collapse_hpc.experiments.lm.data import block_array, load_blocks

        blocks = block_array(load_blocks(data_dir, cfg.dataset, "train", tokenizer, cfg.block_size,
                                         cfg.block_grouping))
        start, stop, disjoint = pretrain_range(len(blocks), cfg)
        model = random_model(tiny_config(cfg, tokenizer))
        pretrain(model, blocks[start:stop], cfg)
        with atomic.atomic_dir(folder) as tmp:
            save_on_any_rank(model, tmp)
            tokenizer.save_pretrained(str(tmp))
            atomic.write_json(tmp / BASE_INFO, {"train_blocks": [start, stop], "block_grouping": cfg.block_grouping,
                                                "disjoint_from_training_blocks": disjoint})
            seal(tmp)
    return folder


def save_on_any_rank(model, folder: Path) -> None:
    """save_pretrained from whichever rank builds the base (the first to take its lock): transformers
    writes nothing on a rank other than 0 of a process group, which left a sealed base without a model
    that every later run refused. What it wrote is checked, so a transformers that saves otherwise fails
    here, not in the next run."""
    model.should_save_on_this_rank = lambda is_main_process: is_main_process  # this instance only
    try:
        model.save_pretrained(str(folder))
    finally:
        del model.should_save_on_this_rank
    if not (folder / "config.json").is_file() or not list(folder.glob("*.safetensors")):
        raise RuntimeError(f"{folder}: save_pretrained wrote no model (config.json and *.safetensors expected)")


BASE_INFO = "base.json"  # in the tiny base's folder: which real train blocks pretrained it


def pretrain_range(n_blocks: int, cfg) -> tuple[int, int, bool]:
    """The real train blocks [start, stop) that pretrain the tiny base, and whether they are disjoint
    from every generation's real training blocks (the first max_train_blocks): the blocks after
    those, at most pretrain_blocks of them; with none left over, the first pretrain_blocks."""
    used = min(cfg.max_train_blocks or n_blocks, n_blocks)
    start = used if used < n_blocks else 0
    stop = min(n_blocks, start + cfg.pretrain_blocks) if cfg.pretrain_blocks else n_blocks
    return start, stop, start > 0


def initial_model(cfg, data_dir: Path, tokenizer) -> dict:
    """What the model before any fine-tuning is (the test-perplexity figure's reference line):
    kind hub | tiny-base | random, and for the tiny base which real train blocks pretrained it."""
    if cfg.model != "tiny":
        return {"kind": "hub" if cfg.pretrained else "random", "model": cfg.model}
    if not cfg.pretrained:
        return {"kind": "random", "model": "tiny"}
    info = json.loads(read_text(tiny_base(cfg, tokenizer, data_dir) / BASE_INFO, "tiny base's record", MODEL_KEPT))
    return {"kind": "tiny-base", "model": "tiny", **info}


def pretrain(model, blocks, cfg, seed: int = 0) -> None:
    """Plain single-process pretraining of the tiny base: AdamW, per-step cosine to lr_min."""
    import numpy as np
    import torch
    from tqdm import tqdm

    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.pretrain_lr, weight_decay=cfg.weight_decay)
    bs = cfg.pretrain_batch_size
    steps = cfg.pretrain_epochs * math.ceil(len(blocks) / bs)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1), eta_min=cfg.lr_min)
    with torch.random.fork_rng(devices=[]), tqdm(total=steps, desc="pretrain tiny base", leave=False) as bar:
        torch.manual_seed(seed)
        for epoch in range(cfg.pretrain_epochs):
            order = np.random.default_rng([seed, epoch]).permutation(len(blocks))
            for start in range(0, len(blocks), bs):
                batch = torch.from_numpy(blocks[order[start:start + bs]]).to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    loss = model(input_ids=batch, labels=batch, use_cache=False).loss
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                sched.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    model.to("cpu").eval()
