"""Per-image turns: a batch puts off an image whose turn another thread holds."""

from __future__ import annotations

import threading

from thumbcache.pipeline.turns import ImageTurns


def test_a_free_turn_is_taken_and_a_held_one_is_not_waited_for():
    turns = ImageTurns()
    with turns.turn("j", "a"), turns.turn_if_free("j", "a") as ours:
        assert ours is False  # held (by us or another thread): put off, no wait
    with turns.turn_if_free("j", "a") as ours:
        assert ours is True
        with turns.turn_if_free("j", "a") as again:
            assert again is False
    with turns.turn_if_free("j", "b") as ours:  # other images never wait for each other
        assert ours is True


def test_a_turn_taken_if_free_is_passed_to_a_waiter_when_released():
    turns = ImageTurns()
    order: list[str] = []
    taken = threading.Event()

    def waiter() -> None:
        taken.wait()
        with turns.turn("j", "a"):
            order.append("waiter")

    thread = threading.Thread(target=waiter)
    thread.start()
    with turns.turn_if_free("j", "a") as ours:
        assert ours
        taken.set()
        thread.join(0.2)
        assert thread.is_alive()  # it waits for our turn
        order.append("batch")
    thread.join(10)
    assert order == ["batch", "waiter"]
