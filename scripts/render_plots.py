"""Render `dvc plots show` (or `dvc plots diff`) to a PNG with headless Chromium, offline.

DVC's HTML loads vega, vega-lite and vega-embed from a CDN. For machines without a network this script
points the page at local copies instead; get them once from the npm registry::

    mkdir -p /tmp/vega && cd /tmp/vega
    npm pack vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2   # the versions DVC's page asks for
    for f in *.tgz; do tar xzf "$f" --one-top-level; done

then, from the project root::

    python scripts/render_plots.py --vega-dir /tmp/vega --out docs/img/dvc-plots.png
    python scripts/render_plots.py --vega-dir /tmp/vega --diff HEAD exp-name --out /tmp/diff.png
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

LIBRARIES = ("vega", "vega-lite", "vega-embed")
# Plots side by side instead of DVC's single column, so one screenshot shows the comparison.
PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    <title>dvc plots</title>
    {scripts}
    <style>
        body { font-family: sans-serif; margin: 12px; display: flex; flex-wrap: wrap; gap: 8px; }
        body > div { flex: 0 0 auto; }
        img { max-width: 420px; }
    </style>
</head>
<body>
{plot_divs}
</body>
</html>
"""
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


class RenderError(RuntimeError):
    pass


def find_library(vega_dir: Path, name: str) -> Path:
    """``<name>.min.js`` anywhere below vega_dir (npm tarballs unpack to <pkg>/package/build/)."""
    matches = sorted(vega_dir.rglob(f"{name}.min.js"))
    if not matches:
        raise RenderError(f"{name}.min.js not found under {vega_dir}; see this script's docstring for `npm pack`")
    return matches[0]


def localize_scripts(html: Path, vega_dir: Path) -> None:
    """Swap the CDN <script src=...> tags for copies next to the page."""
    text = html.read_text()
    for name in LIBRARIES:
        library = find_library(vega_dir, name)
        shutil.copy2(library, html.parent / library.name)
        text, count = re.subn(rf'src="https://cdn\.jsdelivr\.net/npm/{name}@[^"]+"', f'src="{library.name}"', text)
        if count != 1:
            raise RenderError(f"{html}: expected one CDN script tag for {name}, found {count}")
    html.write_text(text)


def screenshot(html: Path, out: Path, width: int, height: int) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise RenderError("no chromium on PATH (apt-get install -y chromium)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "--virtual-time-budget=15000",
            f"--screenshot={out.resolve()}",
            html.resolve().as_uri(),
        ]
        process = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    if process.returncode != 0 or not out.is_file():
        raise RenderError(f"chromium exited {process.returncode}:\n{process.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("targets", nargs="*", help="plot ids or files (default: all plots)")
    parser.add_argument("--vega-dir", type=Path, required=True, help="folder holding the unpacked npm packages")
    parser.add_argument("--diff", nargs="+", metavar="REV", help="dvc plots diff these revisions instead of show")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1100)
    parser.add_argument("--root", type=Path, default=Path("."))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "html"
        template = Path(tmp) / "page.html"
        template.write_text(PAGE)
        command = ["dvc", "plots", "diff", *args.diff] if args.diff else ["dvc", "plots", "show"]
        command += [*args.targets, "--html-template", str(template), "-o", str(folder)]
        process = subprocess.run(command, cwd=args.root, capture_output=True, text=True, check=False)
        if process.returncode != 0:
            print(process.stdout + process.stderr, file=sys.stderr)
            return 1
        try:
            localize_scripts(folder / "index.html", args.vega_dir.resolve())
            screenshot(folder / "index.html", args.out, args.width, args.height)
        except RenderError as error:
            print(f"render failed: {error}", file=sys.stderr)
            return 1
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
