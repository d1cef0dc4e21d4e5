"""`make bench`: run every benchmark, one after another, each with its own cluster or server and its own floor."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = ["bench.bench_sync", "bench.bench_fetch", "bench.bench_api", "bench.bench_operator",
              "bench.bench_dashboard"]


def main() -> None:
    failed = []
    for module in sys.argv[1:] or BENCHMARKS:
        print(f"==> python -m {module}", flush=True)
        if subprocess.run([sys.executable, "-m", module], check=False).returncode != 0:
            failed.append(module)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
