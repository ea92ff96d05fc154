"""The testbed as tools for LLM agents: an MCP server over stdio, and a reference agent loop.

`testbed mcp TOPOLOGY` boots a machine and serves it through the Model Context
Protocol (the official `mcp` SDK, stdio only, no network port): an agent can
read the machine's description and the guest's state, apply hints through the
guest agent's validation (dry run first if it likes), undo them, run workloads
and read the latency plugin's per-node counters, within a per-session budget of
actions and guest time, every call written to an audit file on the host.
`testbed agent-loop` is a small client of that server that gives an
OpenAI-compatible model these tools and records a transcript from which its
figures are rebuilt without the model.
"""
