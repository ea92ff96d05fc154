"""Sessions: `nox -s testbed` boots and checks the topologies, `nox -s tests` runs the tests.

Both set up the host first: as root on Debian they install what is missing
(QEMU 10 from bookworm-backports, mmdebstrap, ...); otherwise they stop with
the exact commands to run.  The guest image is built once and cached.
"""

import os

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


def _install(session: nox.Session, extras: str = "") -> None:
    session.install("-e", f".{extras}")
    session.run("testbed", "host-setup")
    session.run("testbed", "image")


@nox.session
def testbed(session: nox.Session) -> None:
    """Boot every topology (or those named after --) and compare the guest's view with its file."""
    _install(session)
    session.run("testbed", "validate", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests and VM tests. Quick loop: nox -s tests -- -m 'not vm'."""
    _install(session, "[test]")
    session.run("pytest", *(session.posargs or ["-v" if os.environ.get("CI") else "-q"]))


@nox.session(name="bench-boot")
def bench_boot(session: nox.Session) -> None:
    """Seconds from QEMU start to SSH-ready, per topology."""
    _install(session)
    session.run("python", "benchmarks/boot.py", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "testbed", "guest-agent", "tests", "benchmarks")
