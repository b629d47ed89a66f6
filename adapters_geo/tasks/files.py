"""Tasks from local JSON / JSONL files or HF datasets, with configurable fields.

Each record gives a prompt, an answer and optionally a worked solution. GSM8K-style
answers ('…reasoning… #### 42') are split into solution (reasoning + 'Answer: 42') and
answer ('42'); MATH-style ones ('…so the answer is $\\boxed{\\frac{1}{2}}$.') into the solution
(that text + 'Answer: \\frac{1}{2}') and the boxed answer; any other answer is taken as written
(a number normalised: '1,234' -> '1234'). Local files: .json, .jsonl, .parquet, .csv. Loading from the hub needs a network and is bounded in time (models/hub.py); the error
says what was tried. With HF_HUB_OFFLINE=1 a hub dataset is refused at once (or, when the datasets
library itself started offline, read from its cache only).
"""

from pathlib import Path

from adapters_geo.models import hub
from adapters_geo.errors import AdaptersGeoError
from adapters_geo.tasks.example import Example, with_final_answer
from adapters_geo.tasks.rewards import GSM8K_RE, is_number, last_boxed, normalize, normalize_text

LOCAL = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}  # suffix -> datasets builder


def to_example(record: dict, prompt_field: str, answer_field: str, solution_field: str | None) -> Example:
    """One record -> Example (GSM8K '#### N' and MATH '\\boxed{...}' answers parsed)."""
    for field in (prompt_field, answer_field):
        if field not in record:
            raise AdaptersGeoError(
                f"record has no field '{field}' (fields: {', '.join(record)})",
                "set prompt_field / answer_field / solution_field to the dataset's names",
            )
    if solution_field and solution_field not in record:
        raise AdaptersGeoError(f"record has no field '{solution_field}' (fields: {', '.join(record)})",
                               "set solution_field to the dataset's name for a worked solution, or remove it")
    raw = str(record[answer_field])
    worked = str(record[solution_field] or "") if solution_field else ""
    marked, boxed = GSM8K_RE.search(raw), last_boxed(raw)
    if marked:
        answer, worked = normalize(marked.group(1)), raw[: marked.start()]
    elif boxed is not None:  # MATH: the boxed answer; the text around it is the worked solution
        answer = normalize_text(boxed)
        worked = raw if raw.strip().strip("$") != f"\\boxed{{{boxed}}}" else worked
    else:
        answer = normalize(raw) if is_number(raw) else normalize_text(raw)
    if not answer:
        raise AdaptersGeoError(f"a record's '{answer_field}' holds no answer (prompt: {str(record[prompt_field])[:60]!r})",
                               "drop records without an answer, or point answer_field at the answer")
    return Example(str(record[prompt_field]), answer, with_final_answer(worked.replace("\n", " "), answer))


def load_records(path: str, split: str = "train", subset: str | None = None) -> list[dict]:
    """Rows of a local .json/.jsonl/.parquet/.csv file, or of an HF dataset split."""
    import datasets

    local = Path(path).expanduser()
    if local.suffix in LOCAL:
        if not local.is_file():
            raise AdaptersGeoError(f"task file {local} does not exist", "check the path in the task config")
        try:
            return list(datasets.load_dataset(LOCAL[local.suffix], data_files=str(local), split="train"))
        except Exception as exc:
            raise AdaptersGeoError(f"could not read {local} as {local.suffix[1:]} ({type(exc).__name__})",
                                   "a JSON list or one JSON object per line (.json/.jsonl), a parquet table, a CSV with a header") from None
    offline = hub.offline()
    refused = (f"could not load dataset '{path}' split '{split}': tried a local .json/.jsonl/.parquet/.csv file (none); HF_HUB_OFFLINE "
               "is set (the hub was not asked)")
    if offline and not datasets.config.HF_HUB_OFFLINE:  # set after datasets was imported: it would still go online
        raise AdaptersGeoError(refused, "pass a local .json/.jsonl/.parquet/.csv path, or unset HF_HUB_OFFLINE where the hub is reachable")
    try:
        return list(hub.call(f"dataset '{path}'", datasets.load_dataset, path, subset, split=split))
    except AdaptersGeoError:
        raise
    except Exception as exc:
        if offline:  # datasets looked in its own cache only
            raise AdaptersGeoError(f"{refused} and it is not in the local datasets cache",
                                   "pass a local .json/.jsonl/.parquet/.csv path, or unset HF_HUB_OFFLINE where the hub is reachable") from None
        raise AdaptersGeoError(
            f"could not load dataset '{path}' split '{split}': tried a local .json/.jsonl/.parquet/.csv file (none) and the HF hub "
            f"({type(exc).__name__})",
            "pass a local .json/.jsonl/.parquet/.csv path, or run where the hub is reachable",
        ) from None
