"""Evaluation matrices on Ray: a driver spreads a matrix's cells over workers and gathers their runs.

`connect` starts a local Ray instance of N workers or joins an existing cluster;
`work` is what a worker runs (prepare its host once through the same cached
code paths as a serial run, then one topology's group of runs in one boot,
reporting each run as it finishes); `driver` submits the groups, writes
results, summary, plots and manifest as runs come back, retries the run a dead
worker held on another worker, and cancels everything on Ctrl-C; `board` is
the driver's live display. Ray is an optional dependency: `pip install
'llamas-testbed[cluster]'`; a serial `testbed eval` never imports it.
"""
