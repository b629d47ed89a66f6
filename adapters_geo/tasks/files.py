"""Tasks from local JSON / JSONL files or HF datasets, with configurable fields.

Each record gives a prompt, an answer and optionally a worked solution. GSM8K-style
answers ('…reasoning… #### 42') are split into solution (reasoning + 'Answer: 42') and
answer ('42'). Loading from the hub needs a network and is bounded in time (models/hub.py); the error
says what was tried. With HF_HUB_OFFLINE=1 a hub dataset is refused at once (or, when the datasets
library itself started offline, read from its cache only).
"""

from pathlib import Path

from adapters_geo.models import hub
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.tasks.example import Example, with_final_answer
from adapters_geo.tasks.rewards import GSM8K_RE, normalize


def to_example(record: dict, prompt_field: str, answer_field: str, solution_field: str | None) -> Example:
    """One record -> Example (GSM8K '#### N' answers parsed)."""
    for field in (prompt_field, answer_field):
        if field not in record:
            raise AdaptersGeoError(
                f"record has no field '{field}' (fields: {', '.join(record)})",
                "set prompt_field / answer_field / solution_field to the dataset's names",
            )
    raw = str(record[answer_field])
    marked = GSM8K_RE.search(raw)
    if marked:
        answer = normalize(marked.group(1))
        solution = with_final_answer(raw[: marked.start()].replace("\n", " "), answer)
    else:
        answer = normalize(raw)
        text = str(record[solution_field]) if solution_field and record.get(solution_field) else ""
        solution = with_final_answer(text, answer)
    return Example(str(record[prompt_field]), answer, solution)


def load_records(path: str, split: str = "train", subset: str | None = None) -> list[dict]:
    """Rows of a local .json/.jsonl file, or of an HF dataset split."""
    import datasets

    local = Path(path).expanduser()
    if local.suffix in (".json", ".jsonl"):
        if not local.is_file():
            raise AdaptersGeoError(f"task file {local} does not exist", "check the path in the task config")
        try:
            return list(datasets.load_dataset("json", data_files=str(local), split="train"))
        except Exception as exc:
            raise AdaptersGeoError(f"could not read {local} as JSON/JSONL ({type(exc).__name__})", "one JSON object per line, or a JSON list") from None
    offline = hub.offline()
    refused = (f"could not load dataset '{path}' split '{split}': tried a local .json/.jsonl file (none); HF_HUB_OFFLINE "
               "is set (the hub was not asked)")
    if offline and not datasets.config.HF_HUB_OFFLINE:  # set after datasets was imported: it would still go online
        raise AdaptersGeoError(refused, "pass a local .json/.jsonl path, or unset HF_HUB_OFFLINE where the hub is reachable")
    try:
        return list(hub.call(f"dataset '{path}'", datasets.load_dataset, path, subset, split=split))
    except AdaptersGeoError:
        raise
    except Exception as exc:
        if offline:  # datasets looked in its own cache only
            raise AdaptersGeoError(f"{refused} and it is not in the local datasets cache",
                                   "pass a local .json/.jsonl path, or unset HF_HUB_OFFLINE where the hub is reachable") from None
        raise AdaptersGeoError(
            f"could not load dataset '{path}' split '{split}': tried a local .json/.jsonl file (none) and the HF hub "
            f"({type(exc).__name__})",
            "pass a local .json/.jsonl path, or run where the hub is reachable",
        ) from None
