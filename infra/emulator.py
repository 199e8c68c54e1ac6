"""Runs moto's server for Stockroom: the local AWS (DynamoDB, Streams, SQS, S3).

Differences from plain `moto_server`, all about fidelity or speed:

* Requests are dispatched one at a time. DynamoDB makes every conditional
  write and transaction atomic; moto checks a condition and then writes in
  Python, so two threads could both pass `available >= :qty` and drive a level
  below zero, and a cancelled transaction restores a snapshot of the whole
  table over concurrent writes. Serialising dispatch gives DynamoDB's
  guarantees back; sockets are still read and written concurrently.
* moto's slow paths are replaced (transactions, update expressions, SQS
  message counts): see moto_patches.py beside this file. Those patches reach
  into moto's internals, so the emulator refuses to start unless moto is the
  version infra/requirements-dev.txt pins and every patch target exists.
  --check runs those checks and exits; --expect-moto names another version to
  check against (to see the refusal).
* Faults real AWS produces and moto never does (transaction conflicts,
  throttled partitions, lost responses, server errors, failed SQS sends,
  redeliveries), off until a test or `make chaos` asks for them, and the
  read and write units every DynamoDB request consumes: see faults.py.
* With --exit-with-stdin the server exits as soon as its standard input
  closes, so a test process that dies never leaves an emulator behind.
"""

import argparse
import importlib.metadata
import os
import re
import sys
import threading
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().with_name("requirements-dev.txt")


def pinned_moto():
    """The moto version requirements-dev.txt pins, or None if it pins none."""
    pin = re.compile(r"^\s*moto(\[[^\]]*\])?\s*==\s*([^\s;#]+)")
    for line in REQUIREMENTS.read_text().splitlines():
        found = pin.match(line)
        if found:
            return found.group(2)
    return None


def installed_moto():
    try:
        return importlib.metadata.version("moto")
    except importlib.metadata.PackageNotFoundError:
        return None


def problems(expected):
    """What stops the emulator from starting, as sentences; empty when nothing does.
    Reports the version and every missing patch target together, so one run
    says all that an upgrade broke."""
    found = []
    installed = installed_moto()
    if expected is None:
        try:
            expected = pinned_moto()
        except OSError as e:
            return [f"cannot read the moto pin: {e}"]
        if expected is None:
            return [f"{REQUIREMENTS} pins no moto version (moto[server]==X.Y.Z)"]
        source = f"{REQUIREMENTS.parent.name}/{REQUIREMENTS.name} pins"
        hint = " (run `make tools`)"
    else:
        source, hint = "--expect-moto asks for", ""
    if installed is None:
        return [f"moto is not installed; {source} {expected}{hint}"]
    if installed != expected:
        found.append(f"moto {installed} is installed, but {source} {expected}{hint}")
    try:
        import moto_patches
    except ImportError as e:
        # A module or name the patches import is gone: the message names it.
        return [*found, f"moto {installed} lacks a patch target: {e}"]
    found.extend(f"moto {installed} has no {name} to patch" for name in moto_patches.missing_targets())
    return found


def serialised(app):
    lock = threading.Lock()

    def handle(environ, start_response):
        with lock:
            # Materialise the body inside the lock: the work happens while iterating.
            return list(app(environ, start_response))

    return handle


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    parser.add_argument("--exit-with-stdin", action="store_true")
    parser.add_argument(
        "--check", action="store_true", help="check moto and the patch targets, then exit"
    )
    parser.add_argument(
        "--expect-moto",
        metavar="VERSION",
        help="the moto version to require instead of the pin in requirements-dev.txt",
    )
    args = parser.parse_args()
    refusals = problems(args.expect_moto)
    if refusals:
        for refusal in refusals:
            print(f"emulator: {refusal}", file=sys.stderr)
        print("emulator: not starting", file=sys.stderr)
        sys.exit(1)
    # Imported only now: the checks above name a missing module more plainly
    # than a traceback would.
    import faults
    import moto_patches
    from moto.moto_server.threaded_moto_server import MotoRequestHandler
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import run_simple

    moto_patches.install()
    if args.check:
        print(
            f"emulator: moto {installed_moto()} as expected, every patch target present",
            file=sys.stderr,
        )
        return
    os.environ.setdefault("MOTO_PORT", str(args.port))
    if args.exit_with_stdin:

        def watch() -> None:
            sys.stdin.read()
            os._exit(0)

        threading.Thread(target=watch, daemon=True).start()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        serialised(faults.Faults().wrap(app)),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
