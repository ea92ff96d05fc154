"""Sessions: `nox -s testbed` boots and checks the topologies, `nox -s tests` runs the tests.

Both set up the host first: as root on Debian they install what is missing
(QEMU 10 from bookworm-backports, mmdebstrap, ...); otherwise they stop with
the exact commands to run.  The guest image is built once and cached.
"""

import os

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True
# llama-cpp-python builds from source with -march=native, which uses AMX where the CPU reports it;
# in VMs that report AMX without enabling it (these hosts), the server dies with SIGSEGV. AVX2 runs anywhere.
LLAMA_CPP_PORTABLE = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"


def _pip_install(session: nox.Session, extras: str = "") -> None:
    session.install("-e", f".{extras}", env={"CMAKE_ARGS": LLAMA_CPP_PORTABLE} if "local-llm" in extras else None)


def _install(session: nox.Session, extras: str = "") -> None:
    _pip_install(session, extras)
    session.run("testbed", "host-setup")
    session.run("testbed", "image")


@nox.session
def testbed(session: nox.Session) -> None:
    """Boot every topology (or those named after --) and compare the guest's view with its file."""
    _install(session)
    session.run("testbed", "validate", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """Unit, VM and local-LLM tests. Quick loop: nox -s tests -- -m 'not vm and not llm'."""
    _install(session, "[test,local-llm,cluster]")
    # CI prints the slowest tests, so a suite that grows towards its time limit says where
    ci = ["-v", "--durations=40"] if os.environ.get("CI") else ["-q"]
    session.run("pytest", *(session.posargs or ci))


@nox.session(name="bench-boot")
def bench_boot(session: nox.Session) -> None:
    """Seconds from QEMU start to SSH-ready, per topology."""
    _install(session)
    session.run("python", "benchmarks/boot.py", *session.posargs)


@nox.session(name="bench-cluster")
def bench_cluster(session: nox.Session) -> None:
    """A matrix's wall time on 1 and 2 local Ray workers, and felt latency with guests side by side."""
    _install(session, "[cluster,local-llm]")  # the default matrix has an `llm` policy: the local model
    session.run("python", "benchmarks/cluster.py", *session.posargs)


@nox.session(name="bench-latency")
def bench_latency(session: nox.Session) -> None:
    """Felt latency per node vs the topology (emulated mode), then the plugin's overhead vs plain TCG."""
    _install(session)
    for name in session.posargs or ["dram-cxl", "dram-nvm"]:
        session.run("testbed", "probe-latency", name)
    session.run("python", "benchmarks/latency_overhead.py")


@nox.session(name="bench-mttcg")
def bench_mttcg(session: nox.Session) -> None:
    """Felt latency under a TCG thread per vCPU: boots survived, 1-to-2 vCPU speed-up, ratio errors."""
    _install(session)
    session.run("python", "benchmarks/mttcg.py", *session.posargs)


@nox.session(name="bench-tcg-speed")
def bench_tcg_speed(session: nox.Session) -> None:
    """How much TCG slows a register loop and kernel work (first touch) against k, natively vs in the guest."""
    _install(session)
    session.run("python", "benchmarks/tcg_speed.py", *session.posargs)


@nox.session(name="bench-tcg-levels")
def bench_tcg_levels(session: nox.Session) -> None:
    """How far TCG's cost per access moves from one QEMU process to the next, and what moves it."""
    _install(session)
    session.run("python", "benchmarks/tcg_levels.py", *session.posargs)


@nox.session(name="bench-gather")
def bench_gather(session: nox.Session) -> None:
    """Seconds per `llamas-agent gather` on an idle guest, without DAMON (goal: under 1 s)."""
    _install(session)
    session.run("python", "benchmarks/gather.py", *session.posargs)


@nox.session(name="bench-enforce")
def bench_enforce(session: nox.Session) -> None:
    """`llamas-agent enforce`'s CPU share of one vCPU per round, the workload's rate beside it, a round on a native core."""
    _install(session)
    session.run("python", "benchmarks/enforce.py", *session.posargs)


@nox.session(name="bench-accessed-bits")
def bench_accessed_bits(session: nox.Session) -> None:
    """What DAMON sees of a buffer touched in a loop, against what it would see on hardware (TCG's TLB)."""
    _install(session)
    session.run("python", "benchmarks/accessed_bits.py", *session.posargs)


@nox.session
def exam(session: nox.Session) -> None:
    """The hint exam, per scenario and overall (-- --policy: the policy exam). Default: the local llama.cpp model;
    -- --endpoint URL --model M."""
    _pip_install(session, "[local-llm]")  # no VM: no QEMU or image needed
    session.run("python", "benchmarks/exam/run.py", *session.posargs)


@nox.session(name="eval")
def evaluation(session: nox.Session) -> None:
    """The default evaluation matrix (12-30 min on a 2-core host), then its table. Else: -- MATRIX --out DIR
    [--workers N | --ray ADDRESS]."""
    _install(session, "[local-llm,cluster]")
    session.run("testbed", "eval", *(session.posargs or ["default", "--out", "results/eval-default"]))


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "testbed", "guest-agent", "tests", "benchmarks")
