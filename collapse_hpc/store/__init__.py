"""The run store: the one place every experiment writes through (layout, atomic writes,
manifests, verification, the run lock)."""
from collapse_hpc.store.atomic import atomic_path, read_parquet_metadata, write_json, write_parquet
from collapse_hpc.store.layout import RunStore, unit_name
from collapse_hpc.store.manifest import extra_files, read_manifest, verify_unit, write_manifest

__all__ = ["RunStore", "unit_name", "atomic_path", "write_parquet", "write_json", "read_parquet_metadata",
           "read_manifest", "verify_unit", "write_manifest", "extra_files"]
