"""The LLaMaS guest agent: runs inside the guest with python3 alone.

It reports what the kernel knows about the machine and, later, applies
placement hints through the kernel's own interfaces.
"""

MACHINE_SCHEMA_VERSION = 1
