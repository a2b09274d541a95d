"""Shared test helpers (tests/ is on sys.path through conftest.py's folder)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

TESTS = Path(__file__).parent
MODELS_FILE = TESTS / "models.py"

# The weights of the hand-built tiny ONNX model (conftest.tiny_onnx): y = x @ W + b, z = 2 x.
TINY_W = np.arange(6, dtype=np.float32).reshape(3, 2) / 10
TINY_B = np.array([0.5, -1.0], dtype=np.float32)


def factory(name: str) -> str:
    """A factory reference into tests/models.py, the way a user writes one."""
    return f"{MODELS_FILE}:{name}"


def files_in(folder: Path) -> list[str]:
    """Every entry in a folder, hidden temporaries included."""
    return sorted(p.name for p in Path(folder).iterdir())


KIT = Path(sys.executable).with_name("kit")  # the console script pip installed beside this Python


def run_kit(*argv, columns: int = 80, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """Run the real ``kit`` command, as a user types it, at a fixed terminal width."""
    env = {**os.environ, "COLUMNS": str(columns), **kwargs.pop("env", {})}
    return subprocess.run([str(KIT), *map(str, argv)], capture_output=True, text=True, env=env, timeout=timeout,
                          **kwargs)


def run_on_full_disk(tmp_path: Path, script: str, size: str = "8k") -> subprocess.CompletedProcess:
    """Run the shell ``script`` with ``$DISK`` a tiny tmpfs in a private mount namespace, so writes there
    fail with ENOSPC; ``$KIT`` is the kit command. Skips where such a mount is not allowed."""
    import shutil

    import pytest

    disk = tmp_path / "disk"
    disk.mkdir()
    mount = f'mount -t tmpfs -o size={size} tmpfs "$DISK"'
    env = {**os.environ, "COLUMNS": "80", "DISK": str(disk), "KIT": str(KIT)}
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "sh", "-c", mount], env=env,
                                                         capture_output=True).returncode != 0:
        pytest.skip("a full disk is a small tmpfs mounted in a private namespace, which is not allowed here")
    return subprocess.run(["unshare", "-rm", "sh", "-c", f"{mount} && {script}"], capture_output=True, text=True,
                          env=env, timeout=600)


def disk_full_line(folder: Path, name: str) -> str:
    return (f"error: no space left on the disk holding {folder} while writing {name}. Nothing was written. "
            "Free some space there, or write the output to another disk.")


def write_sets(folder: Path, dark: bool):
    """The test detector's scene as a COCO JSON and as a YOLO folder: white (and a dark) 64x32 images
    whose ground truth is where the detector puts its boxes."""
    import cv2

    (folder / "images").mkdir()
    (folder / "labels").mkdir()
    (folder / "classes.txt").write_text("cat\ndog\n")
    scenes = [("white.png", 255)] + ([("dark.png", 0)] if dark else [])
    objects = [(1, 8, 16, 16, 16), (0, 24, 4, 16, 8)]  # class, x, y, w, h in the 64x32 image's pixels
    images, annotations = [], []
    for image_id, (name, value) in enumerate(scenes):
        cv2.imwrite(str(folder / "images" / name), np.full((32, 64, 3), value, np.uint8))
        images.append({"id": image_id, "file_name": name, "width": 64, "height": 32})
        for cls, x, y, w, h in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cls + 1,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
        (folder / "labels" / f"{Path(name).stem}.txt").write_text(
            "".join(f"{cls} {(x + w / 2) / 64} {(y + h / 2) / 32} {w / 64} {h / 32}\n" for cls, x, y, w, h in objects))
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}
    (folder / "instances.json").write_text(json.dumps(coco))
