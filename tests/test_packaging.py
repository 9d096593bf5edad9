"""The distribution ``tormentor-engine``: what its wheel holds and how it installs.

The source folders are top level (``engine/``, ``transport/``, ``cli/``) but install as
``tormentor.engine``, ``tormentor.transport`` and ``tormentor.cli``: no bare ``engine``,
``transport`` or ``cli`` module may land in site-packages. These tests build the wheel
from a copy of the sources, install it into a fresh virtual environment (whose
dependencies come from the test environment through a ``.pth`` line, so nothing is
downloaded apart from the build backend, which pip may fetch for its isolated build),
import it from outside the repository, run the console script, and call a kernel from a
read-only install to see that Numba's cache goes to the user's cache folder.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]
SOURCE_FOLDERS = ("engine", "transport", "cli")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_source_package_is_listed_in_pyproject():
    tool = PYPROJECT["tool"]["setuptools"]
    listed = set(tool["packages"])
    found = set()
    for top in SOURCE_FOLDERS:
        for init in (REPO / top).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / top)
            found.add(".".join(("tormentor", top, *relative.parts)))
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == set(), "pyproject.toml lists packages that do not exist"
    assert tool["package-dir"] == {f"tormentor.{top}": top for top in SOURCE_FOLDERS}
    assert PYPROJECT["project"]["scripts"] == {"tormentor-engine": "tormentor.cli.main:main"}


# ----------------------------------------------------------------------------- build and install


def _copy_sources(destination: Path) -> Path:
    """Copy what a build needs (no build/ leftovers, caches or egg-info) to ``destination``."""
    destination.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc")
    for top in SOURCE_FOLDERS:
        shutil.copytree(REPO / top, destination / top, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, destination / name)
    return destination


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build the wheel from a clean copy of the sources."""
    work = tmp_path_factory.mktemp("wheel")
    source = _copy_sources(work / "src")
    out = work / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out),
                            str(source)], capture_output=True, text=True, timeout=300, cwd=work)
    assert build.returncode == 0, f"building the wheel failed:\n{build.stdout}\n{build.stderr}"
    wheels = list(out.glob("tormentor_engine-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel installed; returns its python."""
    home = tmp_path_factory.mktemp("venv") / "fresh"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(home)
    python = home / "bin" / "python"
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = Path(subprocess.run([str(python), "-c", where], capture_output=True, text=True,
                                  check=True).stdout.strip())
    # The dependencies (numpy, numba, nats-py, ...) come from the test environment: one
    # path line, so its editable install of this repository is NOT activated there.
    (purelib / "test_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                              "--no-index", str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, f"installing the wheel failed:\n{install.stdout}\n{install.stderr}"
    return python


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "NUMBA_CACHE_DIR", "TORMENTOR_NO_NUMBA", "PYTHONSAFEPATH")}
    env.update(extra)
    return env


@pytest.mark.slow
def test_the_wheel_holds_only_the_tormentor_namespace(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    tops = {name.split("/", 1)[0] for name in names}
    dist_info = {top for top in tops if top.endswith(".dist-info")}
    assert len(dist_info) == 1 and dist_info.pop().startswith("tormentor_engine-")
    assert tops - {"tormentor"} - {top for top in tops if top.endswith(".dist-info")} == set()
    for top in SOURCE_FOLDERS:
        assert f"tormentor/{top}/__init__.py" in names
    assert "tormentor/engine/kernels/_jit.py" in names and "tormentor/transport/tor/__init__.py" in names
    assert not any(name.endswith((".nbi", ".nbc", ".pyc")) for name in names)
    entry_points = next(name for name in names if name.endswith("entry_points.txt"))
    with zipfile.ZipFile(wheel) as archive:
        assert "tormentor-engine = tormentor.cli.main:main" in archive.read(entry_points).decode()


@pytest.mark.slow
def test_the_installed_wheel_imports_from_outside_the_repository(installed, tmp_path):
    probe = (
        "import importlib.util, json, tormentor.engine.kernels, tormentor.transport, tormentor.cli.main\n"
        "import tormentor.transport.tor, tormentor.engine.attacks\n"
        "print(json.dumps({'engine': tormentor.engine.kernels.__file__,\n"
        "  'bare': [n for n in ('engine', 'transport', 'cli') if importlib.util.find_spec(n)]}))\n"
    )
    run = subprocess.run([str(installed), "-c", probe], cwd=tmp_path, env=_clean_env(),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout)
    site = installed.parent.parent
    assert Path(found["engine"]).resolve().is_relative_to(site.resolve())  # not the repository's copy
    assert found["bare"] == []
    assert not any((site / "lib").glob("python*/site-packages/engine"))
    script = installed.parent / "tormentor-engine"
    codes = subprocess.run([str(script), "exit-codes"], cwd=tmp_path, env=_clean_env(),
                           capture_output=True, text=True, timeout=120)
    assert codes.returncode == 0, codes.stderr
    assert "client_budget_spent" in codes.stdout and "broker_unreachable" in codes.stdout


@pytest.mark.slow
def test_a_read_only_install_caches_kernels_in_the_user_cache(installed, tmp_path):
    package = Path(subprocess.run([str(installed), "-c", "import tormentor.engine, os; "
                                   "print(os.path.dirname(tormentor.engine.__file__))"],
                                  cwd=tmp_path, env=_clean_env(), capture_output=True, text=True,
                                  check=True).stdout.strip()).parent
    for path in [package, *package.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(stat.S_IMODE(mode) & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        cache_home = tmp_path / "xdg-cache"
        call = ("import numpy as np\n"
                "from tormentor.engine import kernels\n"
                "from tormentor.engine.kernels._jit import cache_dir\n"
                "assert kernels.BACKEND == 'numba', kernels.BACKEND\n"
                "noise = kernels.laplace_noise(2, 3, 1.0, 1.0, np.random.default_rng(0))\n"
                "assert noise.shape == (2, 3)\n"
                "print(cache_dir())\n")
        env = _clean_env(XDG_CACHE_HOME=str(cache_home))
        run = subprocess.run([str(installed), "-c", call], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        assert Path(run.stdout.strip()) == cache_home / "tormentor-engine" / "numba"
        cached = list(cache_home.rglob("*.nbi"))
        assert cached and list(cache_home.rglob("*.nbc"))
        assert any("laplace" in path.name for path in cached)
        assert not [p for p in package.rglob("*") if p.suffix in (".nbi", ".nbc")]
    finally:
        for path in [package, *package.rglob("*")]:
            path.chmod(stat.S_IMODE(path.stat().st_mode) | stat.S_IWUSR)
