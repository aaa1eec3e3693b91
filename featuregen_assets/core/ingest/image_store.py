"""A content-addressed image store: `images/<ab>/<sha256>.<ext>`, written atomically."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from featuregen_assets.core.runtime.processes import is_running

EXTENSIONS = {
    "JPEG": "jpg",
    "PNG": "png",
    "GIF": "gif",
    "WEBP": "webp",
    "BMP": "bmp",
    "TIFF": "tif",
}


class ImageStore:
    """Stores image bytes once under their sha256; a stored file is never rewritten."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, image_id: str, ext: str) -> Path:
        """Where the image with this id and extension lives."""
        return self.root / image_id[:2] / f"{image_id}.{ext}"

    def put(self, data: bytes, image_format: str) -> tuple[str, Path]:
        """Store `data` (of Pillow format `image_format`); return its image id and path."""
        image_id = hashlib.sha256(data).hexdigest()
        path = self.path_for(image_id, EXTENSIONS.get(image_format.upper(), "bin"))
        if path.exists():
            return image_id, path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{os.getpid()}-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return image_id, path

    def sweep_orphans(self) -> int:
        """Delete temporary files left by writers that died (their pid no longer runs)."""
        removed = 0
        for tmp in self.root.glob("??/.tmp-*.part"):
            pid = tmp.name.split("-")[1]
            if pid.isdigit() and not is_running(int(pid)):
                tmp.unlink(missing_ok=True)
                removed += 1
        return removed
