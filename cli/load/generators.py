"""The spawned load-generator processes, the command and result queues that drive them."""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import time
from typing import Any

from .settings import LoadError


class Generators:
    """The spawned generator processes and their queues."""

    def __init__(self, specs: list[Any]) -> None:
        from tormentor.transport.load_clients import generator_main

        context = multiprocessing.get_context("spawn")
        self.results = context.Queue()
        self.commands = [context.Queue() for _ in specs]
        self.processes = [
            context.Process(
                target=generator_main,
                args=(spec, commands, self.results),
                daemon=True,
                name=f"load-generator-{spec.worker}",
            )
            for spec, commands in zip(specs, self.commands, strict=True)
        ]
        for process in self.processes:
            process.start()

    async def ask(self, command: tuple[Any, ...] | None, kind: str, timeout_s: float) -> list[Any]:
        """Send ``command`` to every generator (if given); return each one's ``kind`` answer, in order."""
        if command is not None:
            for commands in self.commands:
                commands.put(command)
        answers: dict[int, Any] = {}
        deadline = time.monotonic() + timeout_s
        while len(answers) < len(self.processes):
            if time.monotonic() > deadline:
                raise LoadError(
                    f"{len(self.processes) - len(answers)} generator(s) did not finish {kind!r} "
                    f"within {timeout_s:.0f} s"
                )
            try:
                worker, got, payload = await asyncio.to_thread(self.results.get, True, 0.5)
            except queue.Empty:
                dead = [p.name for i, p in enumerate(self.processes) if i not in answers and not p.is_alive()]
                if dead and kind != "exit":
                    raise LoadError(f"generator(s) exited during {kind!r}: {', '.join(dead)}") from None
                continue
            if got == "error":
                raise LoadError(f"generator {worker} failed during {kind!r}: {payload}")
            if got != kind:
                raise LoadError(f"generator {worker} answered {got!r} while {kind!r} was expected")
            answers[worker] = payload
        return [answers[i] for i in range(len(self.processes))]

    def stop(self) -> None:
        """Terminate whatever still runs (after a clean exit, nothing does)."""
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
