"""Run directories and atomic writes: a write that fails half-way leaves the old file whole and no
temporary file behind; a checkpoint write killed part-way cannot corrupt ``last.pt``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from detector.checkpoint import write_checkpoint
from detector.runs import make_run_dir, replace_atomic, write_atomic, write_text_atomic


class Boom(RuntimeError):
    pass


def test_a_writer_failing_half_way_leaves_the_old_file_and_no_temporary(tmp_path) -> None:
    path = write_text_atomic(tmp_path / "metrics.json", '{"epoch": 1}')

    def half(f) -> None:
        f.write(b'{"epo')
        f.flush()
        raise Boom("disk full")

    with pytest.raises(Boom):
        write_atomic(path, half)
    assert path.read_text() == '{"epoch": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_failing_first_write_creates_nothing(tmp_path) -> None:
    def fail(tmp) -> None:
        tmp.write_bytes(b"partial")
        raise Boom

    with pytest.raises(Boom):
        replace_atomic(tmp_path / "sub" / "model.onnx", fail)
    assert list((tmp_path / "sub").iterdir()) == []


def test_a_checkpoint_write_interrupted_inside_torch_save_keeps_the_previous_one(tmp_path, monkeypatch) -> None:
    last = write_checkpoint(tmp_path / "last.pt", {"format": "detector", "epoch": 1, "w": torch.ones(3)})
    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs) -> None:
        real_save({"format": "detector", "epoch": 2, "w": torch.zeros(1000)}, f, *args, **kwargs)
        f.truncate(f.tell() // 2)  # half of the new file is on disk ...
        raise KeyboardInterrupt  # ... when the process is interrupted

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        write_checkpoint(last, {"format": "detector", "epoch": 2})
    monkeypatch.undo()
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["epoch"] == 1 and torch.equal(checkpoint["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_process_killed_in_the_middle_of_a_write_leaves_the_old_file(tmp_path) -> None:
    """SIGKILL while the temporary file is half-written: the old file is untouched (the temporary
    may stay behind, as after any crash, but never under the real name)."""
    target = tmp_path / "last.pt"
    target.write_bytes(b"old and complete")
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from detector.runs import write_atomic

        def write(f):
            f.write(b"new but ")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        write_atomic(Path({str(target)!r}), write)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.returncode == -9
    assert target.read_bytes() == b"old and complete"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "last.pt"]
    assert all(name.startswith(".last.pt.") for name in leftovers)


def test_written_files_get_the_usual_permissions(tmp_path) -> None:
    mask = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_make_run_dir_numbers_and_reuses(tmp_path) -> None:
    assert make_run_dir(tmp_path, "eval", "exp") == tmp_path / "eval" / "exp"
    (tmp_path / "eval" / "exp" / "keep.txt").write_text("results")
    assert make_run_dir(tmp_path, "eval", "exp") == tmp_path / "eval" / "exp2"
    assert make_run_dir(tmp_path, "eval", "exp") == tmp_path / "eval" / "exp3"
    assert make_run_dir(tmp_path, "eval", "exp", exist_ok=True) == tmp_path / "eval" / "exp"
    assert (tmp_path / "eval" / "exp" / "keep.txt").read_text() == "results"  # nothing an earlier run wrote is touched


def test_write_text_atomic_replaces_whole_file(tmp_path) -> None:
    target = tmp_path / "a" / "config.yaml"
    write_text_atomic(target, "one")
    write_text_atomic(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["config.yaml"]  # no temporary file left


def test_a_checkpoint_keeps_plain_data_only(tmp_path) -> None:
    from enum import Enum

    from detector.checkpoint import checkpoint_payload

    class Variant(str, Enum):
        v8 = "yolov8"

    model = torch.nn.Linear(2, 2)
    payload = checkpoint_payload(model, {"backbone": {"variant": Variant.v8, "sizes": (1, 2)}}, ["a"])
    assert payload["model_config"] == {"backbone": {"variant": "yolov8", "sizes": [1, 2]}}
    write_checkpoint(tmp_path / "ok.pt", payload)
    assert torch.load(tmp_path / "ok.pt", weights_only=True)["model_config"]["backbone"]["variant"] == "yolov8"
    with pytest.raises(TypeError, match=r"model_config.backbone.path holds a PosixPath"):
        checkpoint_payload(model, {"backbone": {"path": tmp_path}}, ["a"])
