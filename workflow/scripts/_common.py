"""What every workflow script shares: send its output to the rule's log, run an `ipa` command."""
from __future__ import annotations

import os
import sys
import traceback
from contextlib import contextmanager


@contextmanager
def logged(path: str):
    """Send stdout and stderr, of this process and its children, to the rule's log file."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        except SystemExit:
            raise
        except BaseException:
            # into the log, not the terminal: the traceback belongs with the job that failed
            traceback.print_exc()
            raise SystemExit(f"failed; see {path}") from None
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def ipa(argv: list[str]) -> None:
    """Run `ipa ARGV...` in this process (no shell: config values never reach a shell string);
    a non-zero exit fails the job."""
    from ipa.cli import main

    print("ipa " + " ".join(argv), flush=True)
    code = main(argv)
    if code:
        raise SystemExit(code)
