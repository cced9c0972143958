"""The successor's withdrawal on a stop signal: the cut-off is SERVING, asked through
``serves``, and the take-over is cancelled only before it."""

from __future__ import annotations

import asyncio
import signal

from statemigrate.integrations._withdraw import Withdrawal


async def _pending_forever() -> None:
    await asyncio.Event().wait()


def _run(confirm_first: bool) -> tuple[Withdrawal, bool, bool]:
    """A take-over task pending on the loop, SIGUSR1 raised while it waits; whether
    ``serves`` said yes, and whether the task was cancelled."""

    async def main() -> tuple[Withdrawal, bool, bool]:
        loop = asyncio.get_running_loop()
        withdrawal = Withdrawal((signal.SIGUSR1,))
        withdrawal.install(loop)
        task = asyncio.ensure_future(_pending_forever())
        withdrawal.watch(task)
        await asyncio.sleep(0)
        answer = withdrawal.serves() if confirm_first else False
        signal.raise_signal(signal.SIGUSR1)
        if not confirm_first:
            answer = withdrawal.serves()
        for _ in range(10):  # let the loop run the withdrawal's callback
            await asyncio.sleep(0)
        cancelled = task.cancelled()
        task.cancel()
        withdrawal.uninstall(loop, lambda signum: None)
        loop.remove_signal_handler(signal.SIGUSR1)
        return withdrawal, answer, cancelled

    previous = signal.getsignal(signal.SIGUSR1)
    try:
        return asyncio.run(main())
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_a_stop_before_serving_withdraws_and_cancels_the_take_over() -> None:
    withdrawal, serves, cancelled = _run(confirm_first=False)
    assert withdrawal.received == [signal.SIGUSR1]
    assert withdrawal.withdrew and not serves and cancelled
    assert withdrawal.reason.startswith("SIGUSR1 received before taking the state over")


def test_a_stop_after_serving_is_a_stop_of_the_service() -> None:
    withdrawal, serves, cancelled = _run(confirm_first=True)
    assert withdrawal.received == [signal.SIGUSR1]
    assert serves and withdrawal.confirmed
    assert not withdrawal.withdrew and not cancelled
