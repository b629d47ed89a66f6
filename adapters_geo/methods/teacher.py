"""Loading the teacher: a model spec, a saved adapter (an earlier experiment's checkpoint), or
`self_hint` — the frozen base itself, conditioned on the reference solution."""

from pathlib import Path

from adapters_geo.errors import AdaptersGeoError
from adapters_geo.models import load_teacher

SELF_HINT = "self_hint"


def load_teacher_for(source: str, quant: str, student_spec: str, student_tokenizer):
    """A frozen teacher Base for `source`; refuses a tokenizer other than the student's."""
    if source == SELF_HINT:
        teacher = load_teacher(student_spec, quant)
    elif (Path(source) / "adapter.json").is_file():
        from adapters_geo.adapters.io import load_adapter, read_adapter_meta

        meta = read_adapter_meta(source)
        teacher = load_teacher(meta["base"]["spec"], meta["base"]["quant"])
        teacher.model = load_adapter(teacher.model, source)
        teacher.model.requires_grad_(False)
        teacher.model.eval()
    else:
        teacher = load_teacher(source, quant)
    if teacher.tokenizer.get_vocab() != student_tokenizer.get_vocab():
        raise AdaptersGeoError(
            f"teacher '{source}' uses another tokenizer than the student '{student_spec}'",
            "on-policy distillation scores the student's tokens: pick a teacher of the same model family",
        )
    return teacher


def teacher_key(source: str, teacher) -> str:
    """An identity of a loaded teacher Base: its base's fingerprint and quantization, and for an adapter
    teacher the content of its adapter.json (which holds the sha256 of its tensors)."""
    import hashlib

    key = f"{teacher.info.fingerprint}-{teacher.info.quant}-{source == SELF_HINT}"
    meta = Path(source) / "adapter.json"
    if meta.is_file():
        key += "-" + hashlib.sha256(meta.read_bytes()).hexdigest()[:16]
    return key
