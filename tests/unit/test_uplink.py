"""The uplink outbox: order, replay after a drop, bounds, and counting what overflows."""

from hypothesis import given, settings
from hypothesis import strategies as st

from talkie.core.outbox import END, START, Kind, Outbox


def drain(box):
    out = []
    while (item := box.peek()) is not None:
        box.sent(item)
        out.append(item)
    return out


def test_audio_outside_a_turn_is_not_queued():
    box = Outbox(10_000)
    box.push_audio(b"before")
    box.start_turn()
    box.push_audio(b"during")
    box.end_turn()
    box.push_audio(b"after")
    assert [(i.kind, i.pcm) for i in drain(box)] == [
        (Kind.ACTIVITY_START, b""), (Kind.AUDIO, b"during"), (Kind.ACTIVITY_END, b"")]


def test_a_turn_waits_whole_until_sent_and_wakes_the_sender():
    woken = []
    box = Outbox(10_000, on_ready=lambda: woken.append(1))
    box.start_turn()
    for n in range(5):
        box.push_audio(bytes([n]) * 4)
    box.end_turn()
    assert len(box) == 7 and len(woken) == 7
    assert [i.pcm for i in drain(box)][1:6] == [bytes([n]) * 4 for n in range(5)]


def test_replay_resends_the_turn_from_its_start_then_the_rest():
    box = Outbox(10_000)
    box.start_turn()
    box.push_audio(b"a")
    box.push_audio(b"b")
    first = drain(box)  # went out on the old session
    box.push_audio(b"c")  # still waiting when the link dropped
    box.replay()
    box.end_turn()
    again = drain(box)
    assert [i.pcm for i in first] == [b"", b"a", b"b"]
    assert again[0] is START and [i.pcm for i in again[1:4]] == [b"a", b"b", b"c"]
    assert again[-1] is END


def test_a_new_turn_forgets_the_previous_turns_replay():
    box = Outbox(10_000)
    box.start_turn(); box.push_audio(b"one"); box.end_turn(); drain(box)
    box.start_turn(); box.push_audio(b"two")
    drain(box)
    box.replay()
    assert [i.pcm for i in drain(box)] == [b"", b"two"]


def test_overflow_is_counted_and_reported_once_per_turn():
    reports = []
    box = Outbox(10, on_overflow=reports.append)
    box.start_turn()
    for _ in range(5):
        box.push_audio(b"1234")
    assert box.dropped_bytes == 12 and reports == [4]
    box.end_turn()
    box.start_turn()
    box.push_audio(b"12345678901")
    assert reports == [4, 23]  # the first turn still waits, so the second cannot fit


def test_replay_memory_gives_way_to_new_audio():
    box = Outbox(8)
    box.start_turn()
    box.push_audio(b"1234"); box.push_audio(b"5678")
    drain(box)
    box.push_audio(b"abcd")  # fits only by forgetting what was already sent
    assert box.dropped_bytes == 0
    box.replay()
    # the turn's start is lost, but a replay still opens its activity: no audio outside one
    assert [(i.kind, i.pcm) for i in drain(box)] == [(Kind.ACTIVITY_START, b""),
                                                     (Kind.AUDIO, b"abcd")]


def test_drop_forgets_everything():
    box = Outbox(100)
    box.start_turn(); box.push_audio(b"x")
    box.drop()
    box.push_audio(b"y")
    assert box.peek() is None and not box.capturing and len(box) == 0


def test_a_text_turn_is_queued_in_order_and_replayed_alone():
    box = Outbox(100)
    box.start_turn(); box.push_audio(b"a"); box.end_turn()
    box.add_text("and in words?")
    items = drain(box)
    assert [i.kind for i in items] == [Kind.ACTIVITY_START, Kind.AUDIO, Kind.ACTIVITY_END, Kind.TEXT]
    assert items[-1].text == "and in words?"
    box.replay()
    assert [(i.kind, i.text) for i in drain(box)] == [(Kind.TEXT, "and in words?")]


# ---- whatever happens, each connection sees audio only inside an activity


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["start", "audio", "big", "end", "send", "send", "send", "drop",
                                 "text", "lost"]), max_size=80),
       st.integers(8, 64))
def test_every_connection_sees_audio_only_inside_an_activity(ops, budget):
    box = Outbox(budget)
    connections: list[list[Kind]] = [[]]
    for op in ops:
        if op == "start":
            box.start_turn()
        elif op in ("audio", "big"):
            box.push_audio(b"x" * (4 if op == "audio" else 12))
        elif op == "end":
            box.end_turn()
        elif op == "send" and (item := box.peek()) is not None:
            connections[-1].append(item.kind)
            box.sent(item)
        elif op == "drop":
            box.drop()
        elif op == "text":
            box.add_text("hi")
        elif op == "lost":  # the link dropped mid-turn: the next connection gets the replay
            box.replay()
            box.connected()
            connections.append([])
    for kinds in connections:
        inside = False
        for kind in kinds:
            if kind is Kind.ACTIVITY_START:
                assert not inside, kinds  # activities never nest
                inside = True
            elif kind is Kind.ACTIVITY_END:
                assert inside, kinds  # no end without its start
                inside = False
            elif kind is Kind.AUDIO:
                assert inside, kinds
            else:  # a text turn
                assert not inside, kinds


def test_a_dropped_turn_open_on_the_connection_is_closed_there_only():
    box = Outbox(100)
    box.start_turn(); box.push_audio(b"ab")
    drain(box)  # activity_start and some audio went out
    assert box.open_on_the_wire
    box.drop()  # `talkie ctl stop` while talking: the server must still see the activity end
    assert [i.kind for i in drain(box)] == [Kind.ACTIVITY_END] and not box.open_on_the_wire
    box.start_turn(); box.push_audio(b"cd")
    drain(box)
    box.drop()
    box.connected()  # ... but when the connection is gone first, the end is not for the next one
    assert box.peek() is None


def test_a_new_turn_while_the_last_one_still_goes_out_keeps_it_whole_for_a_replay():
    box = Outbox(100)
    box.start_turn(); box.push_audio(b"one"); box.end_turn()
    box.sent(box.peek())  # its activity_start went out, the rest waits
    box.start_turn(); box.push_audio(b"two"); box.end_turn()
    box.replay()  # the link dropped
    box.connected()
    assert [(i.kind.value, i.pcm) for i in drain(box)] == [
        ("activity_start", b""), ("audio", b"one"), ("activity_end", b""),
        ("activity_start", b""), ("audio", b"two"), ("activity_end", b"")]
