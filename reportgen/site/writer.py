"""Write the site: into a temporary folder beside ``--out``, moved into place when complete.

An interrupted or failed build leaves the previous site as it was and removes its
temporary folder. An existing ``--out`` is replaced only when it carries featreport's
marker file (or is empty); anything else is refused untouched.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from types import TracebackType

from ..errors import OutputError
from . import urls

__all__ = ["SiteWriter", "check_output"]

MARKER_TEXT = "This folder was written by featreport and is replaced by its next build.\n"


def check_output(out: Path) -> None:
    """Refuse an ``--out`` that exists and is not a previous featreport site."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OutputError(f"--out {out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / urls.MARKER).is_file():
        raise OutputError(
            f"--out {out} already holds files that featreport did not write (no {urls.MARKER} "
            "marker); it was left untouched. Choose a new or empty folder"
        )
    parent = out.absolute().parent
    if not parent.is_dir():
        raise OutputError(
            f"the folder {parent} that should hold --out does not exist; create it first"
        )
    # Try, rather than read permission bits: root, ACLs and read-only mounts all disagree with them.
    try:
        probe = tempfile.mkdtemp(prefix=f".{out.name}.probe-", dir=parent)
    except OSError as exc:
        raise OutputError(
            f"cannot write in {parent} ({exc.strerror or exc}); "
            "choose an --out in a folder you can write to"
        ) from None
    Path(probe).rmdir()
    # Replacing a site moves it aside, which needs write access to the folder itself.
    if out.is_dir() and not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(
            f"cannot replace --out {out}: it is not writable; fix its permissions or choose another --out"
        )


class SiteWriter:
    """Collect a site's files in a temporary folder and publish them to ``out`` at the end."""

    def __init__(self, out: Path) -> None:
        self.out = out.absolute()
        self.root: Path | None = None
        self._folders: set[Path] = set()  # made already: one mkdir per folder, not per file

    def __enter__(self) -> SiteWriter:
        check_output(self.out)
        try:
            self.root = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.tmp-", dir=self.out.parent))
        except OSError as exc:
            raise OutputError(
                f"cannot create a temporary folder beside --out {self.out}: {exc}"
            ) from None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.root is not None and self.root.exists():
            shutil.rmtree(self.root, ignore_errors=True)

    def _target(self, rel: str) -> Path:
        assert self.root is not None, "SiteWriter used outside its with-block"
        # The temporary folder is ours and holds no links, so a relative name without ".."
        # stays inside it; checked by name, not by resolving every file's whole path.
        name = PurePosixPath(rel)
        if name.is_absolute() or not name.parts or ".." in name.parts or "\\" in rel:
            raise OutputError(f"refusing to write {rel!r} outside the output folder")
        target = self.root.joinpath(*name.parts)
        if target.parent not in self._folders:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(target.parent)
        return target

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write one file of the site, at ``rel`` inside it."""
        target = self._target(rel)
        with self._reporting(rel):
            target.write_bytes(data)

    def write_chunks(self, rel: str, chunks: Iterable[bytes]) -> None:
        """Write one file of the site piece by piece, as ``chunks`` produces them."""
        target = self._target(rel)
        with self._reporting(rel), target.open("wb") as handle:
            for chunk in chunks:
                handle.write(chunk)

    @contextmanager
    def _reporting(self, rel: str) -> Iterator[None]:
        """Turn a failed write into an error that says what to do."""
        try:
            yield
        except OSError as exc:
            hint = "free some space" if exc.errno == errno.ENOSPC else "check the disk"
            raise OutputError(
                f"could not write {rel} beside --out {self.out} ({exc.strerror or exc}); "
                f"{hint} and build again. The previous site, if any, is unchanged"
            ) from None

    def write_text(self, rel: str, text: str) -> None:
        """Write one text file of the site in UTF-8."""
        self.write_bytes(rel, text.encode("utf-8"))

    def publish(self) -> Path:
        """Move the finished site into place, replacing a previous featreport site."""
        assert self.root is not None
        self.write_text(urls.MARKER, MARKER_TEXT)
        self.write_text(".nojekyll", "")
        check_output(self.out)
        try:
            self.root.chmod(0o755)
            if self.out.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.old-", dir=self.out.parent))
                self.out.replace(old / "site")
                self.root.replace(self.out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                self.root.replace(self.out)
        except OSError as exc:
            raise OutputError(f"cannot move the finished site into {self.out}: {exc}") from None
        self.root = None
        return self.out
