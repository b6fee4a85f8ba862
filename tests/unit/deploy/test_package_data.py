"""An installed package (a wheel, not the editable checkout) renders from its own deploy files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
# What the wheel is built from; the copy leaves the checkout without build/ and *.egg-info
# (an in-tree build would also pack whatever a stale build/lib still holds).
SOURCES = ("pyproject.toml", "README.md", "src", "deploy")
LEFT_OUT = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".env")


def copy_sources(dest: Path) -> Path:
    dest.mkdir()
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, symlinks=True, ignore=LEFT_OUT)
        else:
            shutil.copy2(source, dest / name)
    return dest


def test_an_installed_wheel_renders_nginx_and_the_prometheus_files(tmp_path):
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    sources = copy_sources(tmp_path / "sources")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(sources), "-w", str(wheels)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("gpu_cluster-*.whl")
    # A pure-Python wheel installs by unpacking it (what `pip install --target` does with it)
    with zipfile.ZipFile(wheel) as archive:
        assert archive.testzip() is None
        archive.extractall(target)
    env = {**os.environ, "PYTHONPATH": str(target), "GPUCLUSTER_STATE_DIR": str(tmp_path / "s")}
    env.pop("GPUCLUSTER_CONFIG", None)
    where = subprocess.run(
        [sys.executable, "-c", "import gpucluster.assets as a; print(a.DEPLOY_DIR.resolve())"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(target)  # the wheel's copy, not the checkout's
    nginx = subprocess.run(
        [sys.executable, "-m", "gpucluster", "render", "nginx", "--upstream-host", "ray-serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert nginx.returncode == 0, nginx.stderr
    assert "proxy_pass" in nginx.stdout
    upstreams = tmp_path / "s" / "nginx" / "upstreams.conf"
    assert upstreams.read_text() == "server ray-serve:8000;\n"
    for name in ("prometheus.yml", "rules/alerts.yml", "rules/guide-names.yml"):
        assert (Path(where) / "prometheus" / name).is_file(), name
    assert (Path(where) / "alertmanager" / "alertmanager.yml").is_file()
