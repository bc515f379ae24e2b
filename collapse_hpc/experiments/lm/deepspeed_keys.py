"""The top-level keys of lm.deepspeed that DeepSpeed reads: it ignores any other (zero_optimisation:,
gradient_clippin:), so a misspelt block would silently train without it.

The known keys come from DeepSpeed itself: those its DeepSpeedConfig looks up while it parses the very
config a unit hands it (a mapping that records every lookup; a removed block such as elasticity it looks
up to refuse it), and the two that deepspeed.initialize reads from the mapping before parsing it. So what
the installed version reads is known, and nothing goes stale. A key it looks up only in other configs is
ignored in this one: an old spelling (bfloat16) is read only where the new one (bf16, which ds_config
always sets) is absent.

API: Lookups(conf), unread(user, lookups) -> [(key, closest known key or None)].
"""
from __future__ import annotations

import difflib
from collections.abc import KeysView

# deepspeed.initialize reads these from the mapping, outside DeepSpeedConfig (a sequence-parallel mesh)
READ_BY_INITIALIZE = ("data_parallel_size", "sequence_parallel_size")


class Lookups(dict):
    """A DeepSpeed config that records each key looked up in it (get, [], in, in keys())."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.read: set = set()  # copy.copy (as DeepSpeedConfig copies it) shares this set

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key) -> bool:
        self.read.add(key)
        return super().__contains__(key)

    def keys(self):  # type: ignore[override]  # `key in conf.keys()` is a lookup too
        return KeysView(self)


def unread(user: dict, lookups: Lookups) -> list[tuple[str, str | None]]:
    """The user's top-level keys DeepSpeed never looked up, each with the closest key it knows."""
    known = lookups.read | set(READ_BY_INITIALIZE)
    return [(key, next(iter(difflib.get_close_matches(str(key), sorted(known), n=1)), None))
            for key in user if key not in known]
