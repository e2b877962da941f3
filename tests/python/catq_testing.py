"""What the Python tests share: the catq binary and a `catq serve` on a free
loopback port. CATQ_BINARY names the binary (ctest sets it,
tests/python/CMakeLists.txt)."""

import os
import signal
import subprocess
import threading

CATQ = os.environ.get("CATQ_BINARY", "")
LISTENING = "catq serve: listening on "


def have_catq():
    return os.path.isfile(CATQ) and os.access(CATQ, os.X_OK)


def run_catq(*args):
    """Runs the catq binary; fails the test on a non-zero exit."""
    result = subprocess.run([CATQ, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, check=False)
    if result.returncode != 0:
        raise AssertionError(f"catq {' '.join(args)} exited "
                             f"{result.returncode}:\n{result.stdout}")
    return result.stdout


class Server:
    """`catq serve` on a free loopback port, until stop()."""

    def __init__(self, data_dir, *flags):
        self.process = subprocess.Popen(
            [CATQ, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir,
             "--workers", "2", *flags],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output = []
        self.address = None
        # The first line that says where it listens; EOF means it exited.
        for line in self.process.stdout:
            self.output.append(line)
            if line.startswith(LISTENING):
                self.address = line[len(LISTENING):].split(",")[0].strip()
                break
        if self.address is None:
            self.process.wait()
            raise RuntimeError(f"catq serve exited {self.process.returncode} "
                               f"before listening:\n{''.join(self.output)}")
        # Keep draining its output so the server never blocks on the pipe.
        self._drain = threading.Thread(target=self._read_rest, daemon=True)
        self._drain.start()

    def _read_rest(self):
        for line in self.process.stdout:
            self.output.append(line)

    def stop(self):
        """SIGTERM, then waits; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=120)
        self._drain.join(timeout=10)
        self.process.stdout.close()
        return code
