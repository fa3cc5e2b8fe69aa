"""Image formats Pillow reads only through a plugin: HEIC/HEIF (iPhone photos) via pillow-heif."""

from __future__ import annotations

import functools

# AVIF is read by Pillow itself (11.3 and later); HEIC/HEIF need pillow-heif's opener.
PLUGIN_SUFFIXES = frozenset({".heic", ".heif", ".hif"})


@functools.cache
def register() -> bool:
    """Registers pillow-heif's opener with Pillow, once; False where pillow-heif is not installed."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True
