"""Shared fixtures: fresh tiny bases and a short training helper.

Run: make test   (or: python -m pytest -q tests/)
"""

import builtins
import errno
import io
import os
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from adapters_geo import load_base

QUANTS = ["none", "8bit", "4bit"]


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` need CUDA: skipped, and said so in the skip summary (make test: -rs), without it."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="gpu: needs CUDA, and this machine has none")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A skip of a test without the `gpu` marker is a failure: a missing package belongs in the dev extra."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not item.get_closest_marker("gpu") and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid} skipped ({report.longrepr}): only tests marked gpu may skip (tests/conftest.py)"


@pytest.fixture(autouse=True)
def same_process_state():
    """Every test starts from the process state the one before it found: torch's thread count, the working
    directory and the environment are put back after each test, so no test's result depends on the order."""
    threads, cwd, env = torch.get_num_threads(), os.getcwd(), dict(os.environ)
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if os.getcwd() != cwd:
        os.chdir(cwd)
    if dict(os.environ) != env:
        os.environ.clear()
        os.environ.update(env)


@pytest.fixture
def tiny():
    """Factory: a fresh, frozen tiny-llama base with the given quantization."""

    def make(quant: str = "none"):
        torch.manual_seed(0)
        return load_base("tiny-llama", quant)

    return make


def fixed_batch(vocab: int = 250, batch: int = 4, length: int = 24, seed: int = 0) -> torch.Tensor:
    """A fixed batch of random token ids, shape (B, T)."""
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def train_steps(model, steps: int, lr: float = 1e-2, optimizer: str = "adamw", project=None) -> list[float]:
    """Train on one fixed batch for `steps` steps; returns the losses.

    `project(name, param)` may rewrite a parameter's gradient before each step.
    """
    from adapters_geo.training.optim import build_optimizer

    ids = fixed_batch().to(next(model.parameters()).device)
    opt = build_optimizer(model.parameters(), optimizer, lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        if project is not None:
            for name, param in model.named_parameters():
                if param.grad is not None:
                    project(name, param)
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


class ReadOnly:
    """`folder` cannot be written: chmod 555, or (as root, whom chmod does not stop) mkdir / open raise EACCES."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.patch = pytest.MonkeyPatch()

    def __enter__(self):
        if os.geteuid() != 0:
            self.folder.chmod(0o555)
            return self

        inside = lambda path: Path(os.path.abspath(path)).is_relative_to(self.folder)
        deny = lambda path: PermissionError(errno.EACCES, "Permission denied", str(path))
        mkdir, os_open, open_ = os.mkdir, os.open, builtins.open

        def guarded_mkdir(path, *args, **kwargs):
            if inside(path):
                raise deny(path)
            return mkdir(path, *args, **kwargs)

        def guarded_os_open(path, flags, *args, **kwargs):
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
                raise deny(path)
            return os_open(path, flags, *args, **kwargs)

        def guarded_open(path, mode="r", *args, **kwargs):
            if isinstance(path, (str, Path)) and set(mode) & set("wax+") and inside(path):
                raise deny(path)
            return open_(path, mode, *args, **kwargs)

        self.patch.setattr(os, "mkdir", guarded_mkdir)
        self.patch.setattr(os, "open", guarded_os_open)
        self.patch.setattr(builtins, "open", guarded_open)
        self.patch.setattr(io, "open", guarded_open)
        return self

    def __exit__(self, *exc):
        if os.geteuid() != 0:
            self.folder.chmod(0o755)
        self.patch.undo()
        return False


@contextmanager
def interrupted_at(monkeypatch, method_class, step: int):
    """Within: `method_class.loss` raises KeyboardInterrupt on the batch of `step` (0-based), which the block must
    meet (a run killed mid-training); the original loss is back after it."""
    original = method_class.loss

    def loss(self, model, batch):
        if batch.step == step:
            raise KeyboardInterrupt
        return original(self, model, batch)

    monkeypatch.setattr(method_class, "loss", loss)
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    finally:
        monkeypatch.setattr(method_class, "loss", original)
