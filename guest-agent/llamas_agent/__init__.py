"""The LLaMaS guest agent: runs inside the guest with python3 alone.

It reports what the kernel knows about the machine (`machine`, `gather`) and
applies placement hints through the kernel's own interfaces (`apply`, `undo`).
"""

MACHINE_SCHEMA_VERSION = 1
STATE_SCHEMA_VERSION = 1   # the `gather` document
HINTS_SCHEMA_VERSION = 1   # the documents `apply` accepts
