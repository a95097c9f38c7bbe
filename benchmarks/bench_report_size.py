"""Benchmark: the HTML report of a big run stays small and quick (1,000 workers x 100,000
tasks by default).

How this works: a synthetic run (tests/support/synthetic.py: tasks dealt round robin,
every 500th task also to a second worker, every 700th redelivered with DUP, latency recorded
through the harness's Recorder into its HDR histogram) is analysed and rendered as HTML,
JSON and Markdown; the script prints each size and the time each step took, and with
``--browser`` how long headless Chromium takes to load the page. The page must stay under
1 MB: the timeline, the tables and the bars are aggregated, never one element per delivery.

    python benchmarks/bench_report_size.py [--workers 1000] [--tasks 100000] [--browser]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.synthetic import specs, synthetic_run

from aetherdiag.analysis import analyse
from aetherdiag.render import html, markdown, to_json

LIMIT = 1_000_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--browser", action="store_true", help="time headless Chromium too")
    parser.add_argument("--out", type=Path, help="keep the page here")
    args = parser.parse_args()

    t0 = time.perf_counter()
    result = synthetic_run(args.workers, args.tasks, duplicate_every=500, redeliver_every=700)
    t1 = time.perf_counter()
    report = analyse(result, specs(result))
    t2 = time.perf_counter()
    page = html.report_page(report)
    t3 = time.perf_counter()
    doc = to_json(report)
    md = markdown.report_summary(report)
    size = len(page.encode())
    print(f"run: {args.workers} workers x {args.tasks} tasks, {len(result.deliveries)} "
          f"deliveries (synthetic, {t1 - t0:.2f} s)")
    print(f"analyse: {t2 - t1:.2f} s")
    print(f"html: {size:,} bytes ({size / LIMIT:.0%} of 1 MB), rendered in {t3 - t2:.3f} s, "
          f"{page.count('<rect')} <rect>, {page.count('<path')} <path>, "
          f"{page.count('<tr>')} table rows")
    print(f"json: {len(doc.encode()):,} bytes; markdown: {len(md.encode()):,} bytes")
    with tempfile.TemporaryDirectory() as tmp:
        path = args.out or Path(tmp) / "report.html"
        path.write_text(page, encoding="utf-8")
        if args.browser:
            chromium = shutil.which("chromium")
            if chromium is None:
                print("browser: chromium not found")
            else:
                started = time.perf_counter()
                subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                                "--disable-background-networking", "--no-first-run",
                                "--host-resolver-rules=MAP * ~NOTFOUND",
                                "--proxy-server=127.0.0.1:9", f"--user-data-dir={tmp}/p",
                                "--dump-dom", path.resolve().as_uri()],
                               capture_output=True, check=True, timeout=60)
                print(f"browser: loaded and dumped in {time.perf_counter() - started:.2f} s")
    return 0 if size < LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
