"""Reading procfs and sysfs under a configurable root, so tests can use fixture trees."""

import os


class Tree:
    """A view of / (or of a fixture directory laid out like it)."""

    def __init__(self, root="/"):
        self.root = root

    def path(self, *parts):
        return os.path.join(self.root, *[p.lstrip("/") for p in parts])

    def read(self, *parts, default=None):
        """File content stripped, or `default` if it does not exist or cannot be read."""
        try:
            with open(self.path(*parts)) as f:
                return f.read().strip()
        except OSError:
            return default

    def read_int(self, *parts, default=None):
        text = self.read(*parts)
        try:
            return int(text) if text is not None else default
        except ValueError:
            return default

    def listdir(self, *parts, prefix=""):
        try:
            names = os.listdir(self.path(*parts))
        except OSError:
            return []
        return sorted(n for n in names if n.startswith(prefix))


def parse_cpulist(text):
    """'0-2,5' -> [0, 1, 2, 5]; '' -> []."""
    cpus = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def numbered(names, prefix):
    """Sort 'node10', 'node2' by number and return [(2, 'node2'), (10, 'node10')]."""
    out = []
    for name in names:
        suffix = name[len(prefix):]
        if name.startswith(prefix) and suffix.isdigit():
            out.append((int(suffix), name))
    return sorted(out)
