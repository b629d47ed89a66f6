"""The table `adapters-geo overlap` prints: two runs' updates side by side, by module type (no maths here)."""

COLUMNS = [("cosine", "cosine"), ("sim_right", "Sim_K (right)"), ("sim_random", "random Sim_K"),
           ("norm_ratio", "‖ΔA‖ / ‖ΔB‖")]


def _cell(summary: dict, key: str) -> str:
    mean = summary.get(key, {}).get("mean")
    return "n/a" if mean is None else f"{mean:.4f}"


def overlap_table(result: dict) -> str:
    """Markdown: one row per module type and one overall, the mean over matrices of each column."""
    meta = result["meta"]
    lines = [f"A = {meta['a']} (against {meta['reference_a']}), B = {meta['b']} (against {meta['reference_b']}), "
             f"K = {meta['K']}; means over matrices",
             "", "| module | " + " | ".join(title for _, title in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 1) + "|"]
    rows = dict(sorted(result["by_type"].items())) | {"overall": result["overall"]}
    for name, summary in rows.items():
        lines.append(f"| {name} | " + " | ".join(_cell(summary, key) for key, _ in COLUMNS) + " |")
    return "\n".join(lines)
