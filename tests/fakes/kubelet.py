"""A thread playing the kubelet for the fake API server: it ends every Job it holds."""

from __future__ import annotations

import threading
from collections import Counter

from tests.fakes.kube_apiserver import FakeKubeAPIServer


class Kubelet:
    """Ends every Job the fake holds: exit 0, or the code ``outcome(job name)`` gives."""

    def __init__(self, server: FakeKubeAPIServer) -> None:
        self.server = server
        self.outcome: dict[str, tuple[int, str | None]] = {}  # orchestra job -> (code, reason)
        self.paused = threading.Event()
        self.runs: Counter[str] = Counter()  # orchestra job -> Jobs of it that ran
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            if self.paused.is_set():
                continue
            for job in self.server.jobs():
                if job.get("status"):
                    continue
                orchestra_job = job["metadata"]["annotations"]["orchestra.io/job-name"]
                code, reason = self.outcome.get(orchestra_job, (0, None))
                self.runs[orchestra_job] += 1
                self.server.finish_job(
                    job["metadata"]["namespace"], job["metadata"]["name"], code, reason
                )

    def __enter__(self) -> Kubelet:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join()
