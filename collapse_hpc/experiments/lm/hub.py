"""Where a model or tokenizer tag comes from: a local folder, the HF cache, or the hub.

The launcher checks every tag before it writes anything (LanguageModel.check), so a tag that can
only fail, e.g. facebook/opt-125m with the hub offline and an empty cache, is one error line at
submit time instead of one failed job per chain.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from collapse_hpc.errors import UserError
from collapse_hpc.machine import hub_cache

_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's spelling of a true environment flag

# what AutoTokenizer builds a vocabulary from: the fast tokenizer's file, a BPE's pair (GPT-2, OPT),
# a SentencePiece or tiktoken model (Llama, T5), a WordPiece list (BERT), Mistral's tekken.json
VOCABULARY = ("tokenizer.json", "tekken.json", "vocab.txt", "*.model", "*.tiktoken")
# what a unit loads of a hub repository, so what `collapse-hpc stage` fetches: config, weights and code of the
# model, and every tokenizer file the tokenizer check accepts (VOCABULARY; vocab.json and merges.txt); the
# hub's other formats (TensorFlow, Flax, ONNX) are left out
HUB_FILES = tuple(dict.fromkeys(("*.json", "*.safetensors", "*.bin", "*.txt", "*.py", *VOCABULARY)))


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE


def hub_tag(tag: str | None) -> bool:
    """Whether a model or tokenizer setting names a hub repository (not a folder, not the tiny model)."""
    return bool(tag) and tag != "tiny" and not _looks_like_path(str(tag)) and not Path(str(tag)).expanduser().exists()


def _looks_like_path(tag: str) -> bool:
    return tag.startswith(("/", "./", "../", "~")) or tag in (".", "..")


def local_config(tag: str) -> Path | None:
    """The folder holding `tag`'s config.json on this machine: a local model folder, or the HF
    cache's snapshot of a hub tag (never the network); None where there is none."""
    folder = Path(tag).expanduser()
    if (folder / "config.json").is_file():
        return folder
    if not hub_tag(tag):
        return None
    try:
        return cached_snapshot(tag, ("config.json",))
    except ValueError:  # not a valid hub name
        return None


def cached_snapshot(tag: str, files=("config.json", "tokenizer_config.json")) -> Path | None:
    """The HF cache's snapshot folder of hub tag `tag` that holds one of `files` (never the network);
    None where there is none. ValueError where `tag` is no hub name."""
    from huggingface_hub import try_to_load_from_cache

    cache = hub_cache()
    found = (try_to_load_from_cache(tag, f, cache_dir=cache) for f in files)
    return next((Path(f).parent for f in found if isinstance(f, str)), None)


def check_source(key: str, tag: str, slurm: bool = False) -> None:
    """UserError unless `tag` (config key `key`) can be loaded: a folder with config.json or
    tokenizer files, a hub tag in the HF cache, or a hub tag the hub serves to this machine. On
    Slurm a tag that is only on the hub is a warning (compute nodes often have no internet), and so
    is a hub this machine cannot reach; a tag the hub says it lacks is refused everywhere."""
    folder = Path(tag).expanduser()
    if folder.is_dir():
        if not any((folder / f).is_file() for f in ("config.json", "tokenizer_config.json", "tokenizer.json")):
            raise UserError(f"{key}: {folder} holds no model or tokenizer (config.json or tokenizer.json expected)")
        return
    if _looks_like_path(tag) or folder.exists():
        raise UserError(f"{key}: {tag} is not a folder")
    cache = hub_cache()
    try:
        cached = cached_snapshot(tag) is not None
    except ValueError:  # huggingface_hub refuses the name itself (HFValidationError is a ValueError)
        raise UserError(f"{key}: {tag!r} is neither a folder nor a hub tag (owner/name)") from None
    if cached:
        return
    fill = (f"fill it where the hub is reachable: collapse-hpc stage CONFIG --profile P (or hf download {tag} "
            f"with HF_HOME={cache.parent})")
    if hub_offline():
        raise UserError(f"{key}: {tag!r} is not in the HF cache ({cache}) and the hub is "
                        f"offline (HF_HUB_OFFLINE=1); {fill}")
    problem = _on_the_hub(tag)
    if problem is None:
        if slurm:
            logging.getLogger("collapse_hpc").warning(
                "%s: %r is not in the HF cache (%s): each job downloads it, which needs internet on the compute "
                "nodes; %s", key, tag, cache, fill)
        return
    reachable, why = problem
    if reachable or not slurm:  # a local job needs the hub that this machine cannot reach
        raise UserError(f"{key}: {tag!r} is not in the HF cache ({cache}) and {why}"
                        + ("" if reachable else f"; {fill}"))
    logging.getLogger("collapse_hpc").warning(  # compute nodes may reach what a login node cannot
        "%s: %r is not in the HF cache (%s) and %s: each job downloads it; %s", key, tag, cache, why, fill)


def _on_the_hub(tag: str) -> tuple[bool, str] | None:
    """None where the hub serves `tag` to this machine; else (the hub answered, why not): a
    misspelt tag is refused here in a second, not by every job after its download retries."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    api = HfApi()
    try:
        api.model_info(tag, timeout=10)
    except GatedRepoError:
        return True, (f"it is gated on the hub ({api.endpoint}/{tag}): accept its terms and log in "
                      f"(hf auth login, or HF_TOKEN) where the jobs run")
    except RepositoryNotFoundError:
        return True, f"the hub ({api.endpoint}) has no model {tag!r} (misspelt, or private without a token)"
    except Exception as e:  # noqa: BLE001 - any failure to connect: DNS, refused, timeout, proxy
        first = (str(e).splitlines() or [""])[0][:120]
        return False, f"the hub ({api.endpoint}) cannot be reached from here ({type(e).__name__}: {first})"
    return None
