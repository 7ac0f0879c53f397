"""The wheel installs into a fresh virtual environment and its entry point works."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_installs_and_runs_in_a_fresh_venv(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(REPO)], check=True, capture_output=True, timeout=600
    )
    wheel = next(dist.glob("regretflow-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = venv / "bin" / "pip"
    out = subprocess.run([str(pip), "install", "-q", str(wheel)], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    help_out = subprocess.run([str(venv / "bin" / "regretflow"), "--help"], capture_output=True, text=True, timeout=120)
    assert help_out.returncode == 0 and "demo" in help_out.stdout
    code = (
        "from regretflow.learners import OnlineRidge; from regretflow.engine.runtime.events import schema; "
        "from regretflow.connectors.datasets.insurance import load_insurance; "
        "import regretflow.engine, pathlib; assert 'site-packages' in regretflow.engine.__file__; "
        "from regretflow.engine.observability.live import static_file; "
        "assert b'live.js' in static_file('live.html') and b'live.json' in static_file('live.js'); "
        "print(schema()['title'], load_insurance().X.shape)"
    )
    imp = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert imp.returncode == 0, imp.stderr[-3000:]
    assert imp.stdout.strip() == "regretflow event (1338, 18)"
