"""Where the agent keeps its records: the audit log (JSON lines) and the undo record."""

import json
import os
import time

LOG_DIR = "/var/log/llamas-agent"
STATE_DIR = "/var/lib/llamas-agent"


class Records:
    """The audit log, the undo record and the launch policies, under configurable directories."""

    def __init__(self, log_dir=LOG_DIR, state_dir=STATE_DIR):
        self.audit_path = os.path.join(log_dir, "audit.jsonl")
        self.undo_path = os.path.join(state_dir, "undo.json")
        self.launch_path = os.path.join(state_dir, "launch-policies.json")

    def audit(self, **entry):
        """Append one line; written and flushed before the caller moves on."""
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **entry}
        os.makedirs(os.path.dirname(self.audit_path), exist_ok=True)
        with open(self.audit_path, "a") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")

    def load(self, path, default):
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return default

    def save(self, path, data):
        """Write atomically, so a crash leaves the old record or the new one, never half."""
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def push_undo(self, entry):
        """Record how to reverse one change, before the next one is made."""
        entries = self.load(self.undo_path, [])
        entries.append(entry)
        self.save(self.undo_path, entries)
