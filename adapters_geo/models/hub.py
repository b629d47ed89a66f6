"""Hugging Face hub look-ups that cannot hang: a model snapshot or a dataset, fetched within a time limit.

`HF_HUB_OFFLINE=1` is honoured (the caller looks in the local cache only, or refuses at once);
otherwise the call runs in a daemon thread joined with `$ADAPTERS_GEO_HUB_TIMEOUT` seconds
(default 60), so a hub that accepts connections and never answers ends in one line naming the
limit and HF_HUB_OFFLINE. The libraries' retry warnings ("Retrying in 8s") are silenced for the
call: the one line says what happened.
"""

import contextlib
import logging
import os
import threading

from adapters_geo.errors import AdaptersGeoError

TIMEOUT_ENV = "ADAPTERS_GEO_HUB_TIMEOUT"
DEFAULT_TIMEOUT = 60.0  # seconds for one look-up, downloads included
QUIET = ("huggingface_hub", "datasets", "filelock", "fsspec")  # loggers that report retries


def offline() -> bool:
    """HF_HUB_OFFLINE is set (1, true, yes, on)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def timeout() -> float:
    """The time limit of one hub call, in seconds ($ADAPTERS_GEO_HUB_TIMEOUT, default 60)."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        value = float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        value = -1.0
    if not value > 0:
        raise AdaptersGeoError(f"{TIMEOUT_ENV} = {text!r} is not a number of seconds > 0", f"set {TIMEOUT_ENV} to e.g. 60")
    return value


def endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


@contextlib.contextmanager
def _quiet():
    loggers = [logging.getLogger(name) for name in QUIET]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def call(what: str, fn, *args, **kwargs):
    """fn(*args, **kwargs) within the time limit; its own exception is re-raised here, a timeout is one line.

    `what` names the look-up in the error ("model 'org/name'"). A call past the limit is left running in
    its daemon thread (Python cannot stop it); it ends with the process.
    """
    limit = timeout()
    outcome = {}

    def target():
        with _quiet():
            try:
                outcome["value"] = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the caller's thread
                outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"hub: {what}", daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        raise AdaptersGeoError(
            f"{what}: the hub ({endpoint()}) did not answer within {limit:g} s ({TIMEOUT_ENV}); HF_HUB_OFFLINE is not set",
            f"check the network (or HF_ENDPOINT), raise {TIMEOUT_ENV}, or pass a local folder / file "
            "(with HF_HUB_OFFLINE=1 the hub is never asked)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
