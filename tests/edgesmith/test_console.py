"""The progress renderer: bars per task and source, messages named after their source."""

from __future__ import annotations

from rich.console import Console
from rich.progress import Progress, TextColumn

from edgesmith import console
from edgesmith.console import ProgressRenderer
from edgesmith.core.progress import ProgressEvent


def _renderer() -> ProgressRenderer:
    return ProgressRenderer(Progress(TextColumn("{task.description}"), disable=True))


def _epoch(source: str, done: int, accuracy: float) -> ProgressEvent:
    fields = {"val_accuracy": accuracy}
    return ProgressEvent("fine-tune", "epoch", done=done, total=3, fields=fields, source=source)


def test_two_workers_fine_tuning_at_once_keep_their_own_bars():
    renderer = _renderer()
    with renderer:
        # Interleaved as two workers' events arrive: the same task name, two sources.
        renderer(_epoch("cnn-digits prune50", 1, 0.5))
        renderer(_epoch("cnn-digits [a]", 1, 0.6))
        renderer(_epoch("cnn-digits prune50", 2, 0.7))
        renderer(_epoch("cnn-digits prune50", 3, 0.8))
        renderer(_epoch("cnn-digits [a]", 2, 0.9))
    bars = {task.description: task for task in renderer.bar.tasks}
    assert sorted(bars) == [r"cnn-digits \[a]: fine-tune", "cnn-digits prune50: fine-tune"]
    assert bars["cnn-digits prune50: fine-tune"].completed == 3
    assert bars[r"cnn-digits \[a]: fine-tune"].completed == 2
    assert "val_accuracy=0.900" in bars[r"cnn-digits \[a]: fine-tune"].fields["status"]
    # An event of this process (no source) gets a bar of its own name.
    with renderer:
        renderer(ProgressEvent("train cnn-digits", "epoch", done=1, total=2))
    assert renderer.bar.tasks[-1].description == "train cnn-digits"


def test_messages_name_their_source(monkeypatch):
    record = Console(record=True, width=200)
    monkeypatch.setattr(console, "err", record)
    renderer = _renderer()
    renderer(ProgressEvent("recipe", "step 1/2: prune", source="cnn-digits p[1]"))
    renderer(ProgressEvent("executor", "worker lost", level="warning", source="job b"))
    renderer(ProgressEvent("edgesmith run", "compress: cnn-digits p"))
    lines = record.export_text().splitlines()
    assert lines == [
        "cnn-digits p[1]: step 1/2: prune",
        "warning: job b: worker lost",
        "compress: cnn-digits p",
    ]
