"""`collapse-hpc stage`: on a login node with internet, fill the HF cache that a profile's jobs
will use with every hub model the config's variants load, so that jobs run offline
(HF_HUB_OFFLINE=1) and the check before submitting, which looks in that same cache, passes.
The data sets are prepared by the command itself (cli.cmd_stage: collapse-hpc data prepare).
"""
from __future__ import annotations

from collapse_hpc.errors import UserError, first_line
from collapse_hpc.launch.profile import Profile, jobs_caches
from collapse_hpc.machine import HUB_UNREACHABLE, hub_unreachable, quiet_hub_retries


def fetch_models(models: dict[str, tuple[str, ...] | None], prof: Profile | None) -> list[str]:
    """Download every tag's files (tag -> name patterns, the experiment's hub_files; None: all) into the
    jobs' hub cache (a cached one is not fetched again); one line per tag. The hub's reachability is this
    shell's (HF_HUB_OFFLINE unset: online)."""
    from huggingface_hub import constants, snapshot_download

    cache = jobs_caches(prof)[1]  # the hub cache the profile's jobs use
    lines = []
    for tag, files in models.items():
        try:
            with quiet_hub_retries():
                path = snapshot_download(tag, cache_dir=cache, allow_patterns=None if files is None else list(files))
        except Exception as e:  # offline, unknown repository, network, disk: huggingface_hub's many kinds
            why = first_line(e, None)
            hint = " (the hub is offline here: HF_HUB_OFFLINE=1; stage where it is reachable)" \
                if constants.HF_HUB_OFFLINE else f" ({HUB_UNREACHABLE})" if hub_unreachable(e) else ""
            raise UserError(f"stage: {tag}: cannot fetch into {cache}: {why}{hint}") from None
        lines.append(f"model {tag}: in {cache} ({path})")
    return lines
