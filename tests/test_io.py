"""The atomic writers in gpt2qa.io honour the umask and never leave half-written files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gpt2qa.io import (
    atomic_dir,
    atomic_file,
    current_umask,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture()
def umask():
    """Set a umask for one test and restore the old one after it."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize(("mask", "fmode", "dmode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                       (0o002, 0o664, 0o775)])
def test_writers_honour_the_umask(tmp_path: Path, umask, mask: int, fmode: int, dmode: int) -> None:
    import torch
    from safetensors.torch import save_file

    umask(mask)
    assert current_umask() == mask
    assert _mode(write_json_atomic(tmp_path / "a.json", {"x": 1})) == fmode
    assert _mode(write_text_atomic(tmp_path / "b.md", "hi")) == fmode
    assert _mode(write_bytes_atomic(tmp_path / "c.bin", b"\x00")) == fmode
    with atomic_dir(tmp_path / "model") as tmp:
        save_file({"w": torch.zeros(2)}, str(tmp / "model.safetensors"))  # creates it 0600
        (tmp / "sub").mkdir()
        (tmp / "sub" / "x.txt").write_text("x")
    assert _mode(tmp_path / "model") == dmode
    assert _mode(tmp_path / "model" / "model.safetensors") == fmode
    assert _mode(tmp_path / "model" / "sub") == dmode
    assert _mode(tmp_path / "model" / "sub" / "x.txt") == fmode


def test_figure_and_model_dir_honour_the_umask(tmp_path: Path, umask, tiny_tokenizer) -> None:
    from gpt2qa.checkpoint import save_model
    from gpt2qa.plots import save_figure
    from helpers import _pyplot, tiny_model

    umask(0o022)
    plt = _pyplot()
    fig, _ = plt.subplots()
    assert _mode(save_figure(fig, tmp_path / "f.png")) == 0o644
    plt.close(fig)
    out = save_model(tiny_model(tiny_tokenizer), tiny_tokenizer, tmp_path / "run" / "model")
    assert _mode(out) == 0o755
    assert {_mode(p) for p in out.iterdir()} == {0o644}


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = write_text_atomic(tmp_path / "keep.txt", "old")
    with pytest.raises(RuntimeError), atomic_file(target, "w", encoding="utf-8") as fh:
        fh.write("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "d") as tmp:
        (tmp / "x").write_text("x")
        raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
