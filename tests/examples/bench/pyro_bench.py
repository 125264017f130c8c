"""Pyro4 (with HMAC) and Pyro5 for sigil's benchmark (tests/examples/bench/pyro.rs).

    python pyro_bench.py serve Pyro4|Pyro5   prints the object's URI, serves until stdin closes
    python pyro_bench.py call Pyro4|Pyro5 URI SECONDS
                                             sequential add(1, 2) calls; prints calls/s
"""

import sys
import threading
import time

HMAC_KEY = b"sigil-bench"


def api(name):
    if name == "Pyro4":
        import Pyro4

        return Pyro4
    import Pyro5.api

    return Pyro5.api


def serve(name):
    pyro = api(name)

    @pyro.expose
    class Calculator:
        def add(self, a, b):
            return a + b

    daemon = pyro.Daemon(host="127.0.0.1")
    if name == "Pyro4":
        daemon._pyroHmacKey = HMAC_KEY
    uri = daemon.register(Calculator)
    threading.Thread(target=daemon.requestLoop, daemon=True).start()
    print(f"uri: {uri}", flush=True)
    sys.stdin.read()  # until the benchmark closes it


def call(name, uri, seconds):
    pyro = api(name)
    proxy = pyro.Proxy(uri)
    if name == "Pyro4":
        proxy._pyroHmacKey = HMAC_KEY
    assert proxy.add(1, 2) == 3
    n = 0
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        proxy.add(1, 2)
        n += 1
    print(n / (time.perf_counter() - start), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        call(sys.argv[2], sys.argv[3], float(sys.argv[4]))
