"""Run the endpoint suite over a source, matrix by matrix, and assemble geometry.json.

Memory: one (W0, ΔW) pair and its decompositions at a time; the reference SVD is read
from (or written to) the disk cache keyed by the reference's fingerprint and quantization.
"""

import time
from pathlib import Path

from tqdm import tqdm

from adapters_geo.geometry.aggregate import aggregate
from adapters_geo.geometry.reference import SVDCache
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.geometry.report import write_result
from adapters_geo.geometry.sources import Source, adapter_source, checkpoint_source
from adapters_geo.geometry.suite import Settings, matrix_metrics


def analyse(source: Source, settings: Settings, cache: SVDCache | None = None, progress: bool = True) -> dict:
    """{"meta", "matrices", "by_type", "by_layer", "by_block", "overall", "spectra"} for `source`."""
    cache = cache or SVDCache(source.cache_key)
    rows, spectra = {}, {}
    start = time.perf_counter()
    bar = tqdm(source.pairs(), total=len(source.names), desc="geometry", unit="matrix", disable=not progress)
    for name, w0, delta in bar:
        ref = cache.get(name, w0, settings.reference_columns(w0.shape))
        rows[name], spectra[name] = matrix_metrics(w0, delta, ref, settings, with_spectra=True)
    meta = dict(source.meta)
    meta.update(settings.to_dict())
    meta.update({"seconds": time.perf_counter() - start, "svd_cache": {"hits": cache.hits, "misses": cache.misses}})
    return {"meta": meta, "matrices": rows, **aggregate(rows), "spectra": spectra}


def geometry_command(base, tuned=None, adapter=None, quant=None, settings=None, out=None, overwrite=False) -> Path:
    """`adapters-geo geometry`: check inputs, analyse, write the folder; returns it."""
    if (tuned is None) == (adapter is None):
        raise AdaptersGeoError("give either TUNED or --adapter, not both or neither", "see adapters-geo geometry --help")
    out = Path(out or Path("runs") / "geometry" / Path(tuned or adapter).name)
    if out.exists() and not overwrite:
        raise AdaptersGeoError(f"{out} already exists", "pass --overwrite or choose another --out")
    source = checkpoint_source(base, tuned) if tuned else adapter_source(base, adapter, quant)
    result = analyse(source, settings or Settings())
    return write_result(result, out, overwrite=overwrite)
