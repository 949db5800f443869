"""Run the mock hub in the foreground: ``python -m tests.mockhub [--port N] [--fixtures DIR]
[--clean] [--synthetic N [--seed S]]``.

Prints ``MOCKHUB_URL=<url>`` once listening, so scripts can read the chosen port.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from tests.mockhub.server import FIXTURES, MockHub


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mockhub", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--fixtures", default=str(FIXTURES))
    parser.add_argument("--clean", action="store_true",
                        help="leave out the fixtures that are faulty on purpose (the demo's hub)")
    parser.add_argument("--synthetic", type=int, metavar="N", default=None,
                        help="serve N generated Hugging Face models instead of the fixtures")
    parser.add_argument("--seed", type=int, default=0, help="seed of --synthetic")
    args = parser.parse_args(argv)
    hub = MockHub(args.fixtures, port=args.port, clean=args.clean)
    if args.synthetic is not None:
        from tests.mockhub.synthetic import enable

        enable(hub, args.synthetic, seed=args.seed)
    hub.start()
    print(f"MOCKHUB_URL={hub.url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    hub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
