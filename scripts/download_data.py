"""Download the hymenoptera (ants vs bees) dataset into data/ and verify it.

    python scripts/download_data.py            # -> data/hymenoptera_data/{train,val}/{ants,bees}
    python scripts/download_data.py --dest DIR

The zip is the one the PyTorch transfer-learning tutorial uses. What is verified is its content:
a SHA-256 over every extracted file (sorted relative path + file hash), so a truncated or altered
download is caught even though the zip itself is re-packed now and then. Offline, the script
says so in one line and names the override that works: data.root=/path/to/hymenoptera_data.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

URL = "https://download.pytorch.org/tutorial/hymenoptera_data.zip"
# tree_digest() of the 398 files of hymenoptera_data as commonly distributed.
TREE_SHA256 = "09b2329aa6956906521686a682b4c4793592134e6d718c3e9769e005ec240417"
FILE_COUNT = 398


def tree_digest(root: Path) -> tuple[str, int]:
    """SHA-256 over (relative path, SHA-256 of content) of every file under root, sorted."""
    digest, count = hashlib.sha256(), 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).hexdigest().encode() + b"\n")
        count += 1
    return digest.hexdigest(), count


def download(url: str, target: Path) -> None:
    with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc="hymenoptera_data.zip") as bar:
            while chunk := response.read(1 << 16):
                out.write(chunk)
                bar.update(len(chunk))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path("data"), help="folder to extract into")
    parser.add_argument("--url", default=URL)
    parser.add_argument("--verify-only", action="store_true", help="only check an existing copy")
    args = parser.parse_args(argv)
    final = args.dest / "hymenoptera_data"

    if final.is_dir():
        digest, count = tree_digest(final)
        if digest == TREE_SHA256:
            print(f"{final} is complete and verified ({count} files)")
            return 0
        print(
            f"{final} exists but does not match the expected content ({count} files); "
            "delete it to download again",
            file=sys.stderr,
        )
        return 1
    if args.verify_only:
        print(f"{final} does not exist", file=sys.stderr)
        return 1

    # The download goes to a temporary folder inside dest (the final rename stays on one file
    # system), so dest must exist first; folders made here are removed again on failure, so a
    # failed download leaves nothing behind.
    created = [folder for folder in (args.dest, *args.dest.parents) if not folder.exists()]
    args.dest.mkdir(parents=True, exist_ok=True)
    try:
        count = fetch_and_verify(args.url, args.dest, final)
    finally:
        for folder in created:  # deepest first
            if final.is_dir() or any(folder.iterdir()):
                break
            folder.rmdir()
    if count is None:
        return 1
    print(f"{final}: {count} files, verified")
    return 0


def fetch_and_verify(url: str, dest: Path, final: Path) -> int | None:
    """Download, extract and verify into final; the file count, or None after saying why."""
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        archive = Path(tmp) / "hymenoptera_data.zip"
        try:
            download(url, archive)
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            print(
                f"could not download {url} ({reason}); offline? copy the dataset by other "
                "means and pass data.root=/path/to/hymenoptera_data",
                file=sys.stderr,
            )
            return None
        try:
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(tmp)
        except zipfile.BadZipFile as error:
            print(
                f"downloaded {url} is not a usable zip ({error}); nothing was kept", file=sys.stderr
            )
            return None
        extracted = Path(tmp) / "hymenoptera_data"
        shutil.rmtree(Path(tmp) / "__MACOSX", ignore_errors=True)
        digest, count = tree_digest(extracted)
        if digest != TREE_SHA256:
            print(
                f"downloaded data failed verification ({count} files, digest {digest[:12]}…, "
                f"expected {FILE_COUNT} files, {TREE_SHA256[:12]}…); nothing was kept",
                file=sys.stderr,
            )
            return None
        extracted.rename(final)
    return count


if __name__ == "__main__":
    sys.exit(main())
