"""Everything a run keeps on disk, and its safety: the run folder's file names and typed reads (runfolder.py),
atomic writes (atomic.py), claiming a folder and its one-writer lock (claim.py, lockfile.py), disk budgets
(disk.py), ΔW_t snapshots (snapshots.py), and the caches: their root (paths.py) and reference SVDs (svd_cache.py)."""
