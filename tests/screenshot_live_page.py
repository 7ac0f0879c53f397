"""Make the README's screenshot of the live page: ``python tests/screenshot_live_page.py [OUT.png]``.

Runs ``regretflow demo`` (every family, one pass at 400 events/s) on a free port, opens
``/`` in headless Chromium (Debian's ``chromium``, as the live-page test does), waits
until the page has refreshed for ``--seconds`` (default 15), and saves a full-page PNG
(default ``deploy/images/live-page.png``).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.live_browser import Chromium  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", nargs="?", default=str(REPO / "deploy/images/live-page.png"))
    p.add_argument("--seconds", type=float, default=15.0, help="page refreshes to wait for (one a second)")
    p.add_argument("--width", type=int, default=1400)
    args = p.parse_args(argv)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    regretflow = Path(sys.executable).parent / "regretflow"
    demo = subprocess.Popen(
        [str(regretflow), "demo", "--passes", "1", "--rate", "400", "--port", str(port), "--no-progress", "--linger", "120"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if demo.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the demo did not start: " + demo.stderr.read().decode()[-2000:])
            time.sleep(0.1)
        with Chromium(width=args.width, height=1000) as browser:
            browser.navigate(f"http://127.0.0.1:{port}/")
            browser.wait_for(f"+document.body.dataset.updates >= {int(args.seconds)}", timeout=args.seconds + 60)
            path = browser.screenshot(args.out)
            if browser.errors:
                raise SystemExit(f"the page logged errors: {browser.errors}")
        print(path)
    finally:
        demo.terminate()
        demo.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
