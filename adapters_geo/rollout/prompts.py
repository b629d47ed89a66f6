"""Prompt formatting: the tokenizer's chat template when it has one, plain text otherwise."""

HINT_TEMPLATE = "{prompt}\n\nA correct worked solution, for reference: {solution}\nNow solve it yourself."


def chat_prompt(tokenizer, question: str, system: str | None = None) -> str:
    """The text that precedes the model's answer to `question`."""
    if getattr(tokenizer, "chat_template", None):
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prefix = f"{system}\n\n" if system else ""
    return f"{prefix}Question: {question}\nAnswer:"


def encode(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, without extra special tokens (the template adds its own)."""
    return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
