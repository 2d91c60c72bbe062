"""Does `duplicates` (a command on PATH) find a copy of one of issue 20's rules in facekp_cli/?

    .venv/bin/python scripts/check_duplicates.py [--min-lines 4]

Runs `duplicates --repo facekp_cli`, reads both places of every pair it lists, and fails (exit 1)
when the shared lines state one of the rules tests/test_layers.py gives one home (ONE_HOME: the
tomllib shim, point indices, Lightning logger silencing, image size from a header, the drawing
pixel rule, run-folder naming, the MLflow URI, the image and video suffixes). Other pairs are
printed for reading, not failed: `duplicates` lists places to look, not verdicts.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^D\d+ (\S+):(\d+)-(\d+) ~ (\S+):(\d+)-(\d+)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-lines", type=int, default=4)
    args = parser.parse_args()
    if shutil.which("duplicates") is None:
        print("error: `duplicates` is not on PATH", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    from tests.test_layers import ONE_HOME

    package = ROOT / "facekp_cli"
    cmd = ["duplicates", "--repo", str(package), "--min-lines", str(args.min_lines), "--most", "200"]
    out = subprocess.run([*cmd, "--seconds", "120"], capture_output=True, text=True, check=False).stdout
    print(out.splitlines()[0] if out else "duplicates said nothing")
    copies = []
    for line in out.splitlines():
        match = ROW.match(line)
        if not match:
            continue
        a, a0, a1, b, b0, b1 = match.groups()
        texts = []
        for name, start, end in ((a, a0, a1), (b, b0, b1)):
            lines = (package / name).read_text(encoding="utf-8").splitlines()
            texts.append("\n".join(lines[int(start) - 1 : int(end)]))
        for rule, (pattern, _home) in ONE_HOME.items():
            if all(re.search(pattern, text) for text in texts):
                copies.append(f"{rule}: {line}")
    if out and "incomplete:" in out:
        print(next(x for x in out.splitlines() if x.startswith("incomplete:")), file=sys.stderr)
        return 2
    for copy in copies:
        print(f"copied rule: {copy}")
    print("no copied rule from issue 20's list" if not copies else f"{len(copies)} copied rule(s)")
    return 1 if copies else 0


if __name__ == "__main__":
    sys.exit(main())
