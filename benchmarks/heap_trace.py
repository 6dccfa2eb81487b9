"""What glibc's heap holds during a ``domainfit train`` run: in use against free-but-resident, over time.

    DOMAINFIT_ALLOCATOR=system .venv/bin/python benchmarks/heap_trace.py train benchmarks/phrasebank_bench.yaml \
        train.epochs=1 output.dir=runs/heap-trace output.overwrite=true

Runs the command in this process (so on glibc's malloc: called as a library, domainfit does not re-execute on
mimalloc) and prints, every 3 seconds, the resident size and glibc's ``mallinfo2``: heap bytes in use, heap
bytes free (freed by the program, kept by glibc, resident once touched) and large blocks mapped directly.
The figure behind BENCHMARKS.md's "0.35 GB freed but kept, against 0.31 GB in use" (end of one PhraseBank epoch).
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time

import psutil

GB = 1e9


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def main() -> int:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    process = psutil.Process()
    start = time.perf_counter()
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(3.0):
            info = libc.mallinfo2()
            print(
                f"[heap] {time.perf_counter() - start:7.1f} s  RSS {process.memory_info().rss / GB:.3f} GB  "
                f"heap in use {info.uordblks / GB:.3f}  heap free {info.fordblks / GB:.3f}  "
                f"mapped blocks {info.hblkhd / GB:.3f} GB ({info.hblks})",
                flush=True,
            )

    threading.Thread(target=poll, daemon=True).start()
    from domainfit.cli import main as domainfit_main

    try:
        return domainfit_main(sys.argv[1:])
    finally:
        stop.set()


if __name__ == "__main__":
    sys.exit(main())
