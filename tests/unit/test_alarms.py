"""Timers and alarms: the store (alarms.json, atomic 0600, corrupt files are empty), the scheduler
(rings once, survives a restart and a stepped clock, idle when none is set), the timers tool
through the tool runner, and the chime."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import stat

import numpy as np
import pytest

from talkie.audio.chime import chime
from talkie.tools import Registry
from talkie.tools.alarm_store import FILE_NAME, READ_MAX, AlarmStore
from talkie.tools.alarms import CHECK_S, AlarmError, Alarms
from talkie.tools.timer_tool import due_at, span_words, timer_tool, when_words
from talkie.tools.calls import Calls

UTC = dt.timezone.utc
START = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC, a Friday


class Clocks:
    """The wall clock (NTP may step it) and the monotonic one (it only runs)."""

    def __init__(self, wall: float = START, mono: float = 5000.0):
        self.now, self.mono = wall, mono

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def run(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds


class Handle:
    def __init__(self, delay, callback):
        self.delay, self.callback, self.cancelled, self.ran = delay, callback, False, False

    def cancel(self):
        self.cancelled = True


class Later:
    """A call_later on the test's clocks: nothing runs until the test says so."""

    def __init__(self, clocks: Clocks):
        self.clocks, self.handles = clocks, []

    def __call__(self, delay, callback):
        handle = Handle(delay, callback)
        self.handles.append(handle)
        return handle

    @property
    def live(self):
        return [h for h in self.handles if not h.cancelled and not h.ran]

    def run_next(self):
        (handle,) = self.live  # never more than one look at the clock pending
        self.clocks.run(handle.delay)
        handle.ran = True
        handle.callback()
        return handle.delay


class Rig:
    def __init__(self, folder, *, max_alarms=20, clocks=None, start=True):
        self.path = folder / FILE_NAME
        self.clocks = clocks or Clocks()
        self.later = Later(self.clocks)
        self.rung = []
        self.store = AlarmStore(self.path)
        self.alarms = Alarms(self.store, on_due=self.rung.append, clock=self.clocks.wall,
                             monotonic=self.clocks.monotonic, max_alarms=max_alarms,
                             call_later=self.later)
        if start:
            self.alarms.start()

    def saved(self):
        assert self.store.flush(5)
        return json.loads(self.path.read_text())

    def reopen(self, **kw):
        """The daemon restarted: the same file and clocks."""
        assert self.store.flush(5)
        self.store.close()
        return Rig(self.path.parent, clocks=self.clocks, **kw)


def warnings(caplog):
    return [r for r in caplog.records if r.name.startswith("talkie") and r.levelno >= logging.WARNING]


# ---- setting, listing, cancelling


def test_a_timer_by_duration_is_saved_and_scheduled(tmp_path):
    rig = Rig(tmp_path)
    timer = rig.alarms.set(in_s=600, label="pasta", call_id="c1")
    assert (timer.id, timer.kind, timer.label, timer.call_id) == ("t1", "timer", "pasta", "c1")
    assert timer.due == START + 600 and timer.set_at == START and timer.clock == ""
    assert rig.alarms.next_check_s == CHECK_S
    saved = rig.saved()
    assert saved["version"] == 1 and saved["next"] == 2
    assert saved["alarms"] == [{"id": "t1", "kind": "timer", "label": "pasta", "due": START + 600,
                                "set_at": START, "call_id": "c1", "clock": ""}]


def test_a_clock_time_is_its_next_occurrence_today_or_tomorrow():
    assert due_at("09:30", START, UTC) == (START + 5400, "09:30")
    assert due_at("7:05", START, UTC) == (START + 86400 - 3300, "07:05")  # passed today
    assert due_at("08:00", START, UTC) == (START + 86400, "08:00")  # this minute: tomorrow
    assert due_at("2027-01-16T06:30", START, UTC) == (START + 81000, "06:30")
    with pytest.raises(AlarmError):
        due_at("2027-02-30T06:30", START, UTC)


def test_a_clock_time_across_the_change_to_summer_time():
    zoneinfo = pytest.importorskip("zoneinfo")
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    now = dt.datetime(2027, 3, 27, 12, 0, tzinfo=berlin).timestamp()  # CET; CEST from the 28th
    when, clock = due_at("08:00", now, berlin)
    assert clock == "08:00"
    assert when == dt.datetime(2027, 3, 28, 6, 0, tzinfo=UTC).timestamp()  # 08:00 CEST
    assert when - now == 19 * 3600  # not 20: an hour of the night is skipped


def test_times_in_words():
    assert span_words(45) == "45 seconds" and span_words(1) == "1 second"
    assert span_words(600) == "10 minutes" and span_words(599.6) == "10 minutes"
    assert span_words(270) == "4 minutes 30 seconds"
    assert span_words(3900) == "1 hour 5 minutes" and span_words(3600) == "1 hour"
    assert span_words(2 * 86400 + 3 * 3600) == "2 days 3 hours"
    assert span_words(0.2) == "now" and span_words(-5) == "now"
    assert when_words(START + 600, START, UTC) == "08:10"
    assert when_words(START + 86400, START, UTC) == "tomorrow 08:00"
    assert when_words(START + 3 * 86400, START, UTC) == "Monday 08:00"
    assert when_words(START + 8 * 86400, START, UTC) == "2027-01-23 08:00"


def test_list_cancel_by_id_by_label_and_all(tmp_path):
    rig = Rig(tmp_path)
    a = rig.alarms
    eggs = a.set(in_s=300, label="Eggs")
    pasta = a.set(in_s=600, label="pasta")
    wake = a.set(at=START + 3600, clock="09:00")
    assert (eggs.id, pasta.id, wake.id, wake.kind) == ("t1", "t2", "a3", "alarm")
    assert a.list() == [eggs, pasta, wake]
    assert (eggs.words, wake.words) == ('the timer "Eggs"', "the 09:00 alarm")
    assert a.set(in_s=5).words == "a timer" and a.cancel("t4")
    assert a.cancel("T2") == [pasta]
    assert a.cancel("eggs") == [eggs]  # by label, whatever the case
    assert a.cancel("nothing") == [] and a.cancel("") == []
    assert a.list() == [wake]
    assert a.cancel_all() == [wake] and a.list() == [] and a.cancel_all() == []
    assert rig.saved()["alarms"] == []
    assert {s["ended"] for s in rig.saved()["spent"]} <= {"cancelled"}
    assert a.set(in_s=60).id == "t1"  # nothing pending: the numbers start again


def test_limits(tmp_path):
    rig = Rig(tmp_path, max_alarms=2)
    rig.alarms.set(in_s=60)
    rig.alarms.set(in_s=7 * 86400)
    with pytest.raises(AlarmError, match="2 timers and alarms are set"):
        rig.alarms.set(in_s=60)
    rig.alarms.cancel("t1")
    for bad in ({"in_s": 7 * 86400 + 1}, {"in_s": 0}, {"at": START - 1}, {}, {"in_s": 5, "at": START + 9}):
        with pytest.raises(AlarmError):
            rig.alarms.set(**bad)
    assert len(rig.alarms.list()) == 1


def test_the_same_call_sets_one_alarm_even_across_a_restart(tmp_path):
    rig = Rig(tmp_path)
    first = rig.alarms.set(in_s=600, call_id="call-7")
    assert rig.alarms.set(in_s=900, call_id="call-7") == first
    assert len(rig.alarms.list()) == 1
    rig = rig.reopen()
    assert rig.alarms.set(in_s=900, call_id="call-7") == first
    assert rig.alarms.list() == [first]
    rig.clocks.run(600)
    assert rig.alarms.check() == [first]
    with pytest.raises(AlarmError, match="already set t1, which has since rung"):
        rig.alarms.set(in_s=900, call_id="call-7")
    rig = rig.reopen()
    with pytest.raises(AlarmError, match="already set"):
        rig.alarms.set(in_s=900, call_id="call-7")
    assert rig.alarms.list() == [] and rig.rung == []


# ---- ringing


def test_a_timer_rings_once_and_then_nothing_is_pending(tmp_path):
    rig = Rig(tmp_path)
    assert rig.alarms.next_check_s is None and rig.later.live == []  # idle: no work at all
    timer = rig.alarms.set(in_s=150)
    assert [rig.later.run_next() for _ in range(3)] == [60, 60, 30]
    assert rig.rung == [timer]
    assert rig.alarms.next_check_s is None and rig.later.live == []
    assert rig.saved()["alarms"] == []
    rig.alarms.set(in_s=30)
    rig.alarms.cancel("t1")
    assert rig.alarms.next_check_s is None and rig.later.live == []


def test_one_due_while_the_device_was_off_rings_once_at_start(tmp_path):
    rig = Rig(tmp_path)
    timer = rig.alarms.set(in_s=60, call_id="c")
    alarm = rig.alarms.set(at=START + 120, clock="08:02")
    rig.alarms.close()
    rig.clocks.run(3600)  # off for an hour
    rig = rig.reopen(start=False)
    assert rig.rung == [] and rig.later.live == []
    rig.alarms.start()
    assert rig.alarms.next_check_s == 0
    rig.later.run_next()
    assert rig.rung == [timer, alarm]  # the soonest first
    assert rig.saved()["alarms"] == [] and rig.later.live == []
    again = rig.reopen()
    assert again.later.live == [] and again.rung == []


def test_a_listener_that_fails_does_not_stop_the_others(tmp_path, caplog):
    rig = Rig(tmp_path)
    heard = []

    def on_due(alarm):
        heard.append(alarm.id)
        if alarm.id == "t1":
            raise RuntimeError("speaker gone")

    rig.alarms.on_due = on_due
    rig.alarms.set(in_s=10)
    rig.alarms.set(in_s=10)
    rig.later.run_next()
    assert heard == ["t1", "t2"] and rig.later.live == []


def test_a_clock_stepped_forward_rings_an_alarm_at_the_next_look(tmp_path):
    rig = Rig(tmp_path)
    alarm = rig.alarms.set(at=START + 3 * 3600, clock="11:00")
    assert rig.alarms.next_check_s == CHECK_S  # not one call_later of three hours
    rig.clocks.now += 4 * 3600  # NTP steps the clock
    rig.later.run_next()
    assert rig.rung == [alarm] and rig.later.live == []


def test_a_clock_stepped_back_rings_nothing_early(tmp_path):
    rig = Rig(tmp_path)
    alarm = rig.alarms.set(at=START + 30, clock="08:00")
    assert rig.alarms.next_check_s == 30
    rig.clocks.now -= 3600
    rig.later.run_next()
    assert rig.rung == [] and rig.alarms.next_check_s == CHECK_S
    for _ in range(60):
        rig.later.run_next()
    assert rig.rung == [alarm]


def test_a_timer_keeps_its_duration_when_the_clock_is_stepped(tmp_path):
    rig = Rig(tmp_path)
    timer = rig.alarms.set(in_s=600)
    rig.later.run_next()
    rig.clocks.now += 5 * 3600  # the clock was wrong when the timer was set
    rig.later.run_next()
    assert rig.rung == []
    moved = rig.saved()["alarms"][0]["due"]
    assert moved == START + 600 + 5 * 3600  # a restart now rings it at the right time
    assert rig.alarms.list()[0].due == moved
    while not rig.rung:
        rig.later.run_next()
    assert rig.rung[0].id == timer.id and rig.clocks.mono == 5000 + 600


def test_with_the_loops_own_call_later(tmp_path):
    async def main():
        clocks = Clocks()
        store = AlarmStore(tmp_path / FILE_NAME)
        rung = []
        alarms = Alarms(store, on_due=rung.append, clock=clocks.wall, monotonic=clocks.monotonic)
        alarms.start()
        assert alarms.next_check_s is None
        timer = alarms.set(in_s=5)
        assert alarms.next_check_s == 5
        clocks.now -= 3600  # stepped back: the timer's monotonic time is what counts
        clocks.mono += 5
        alarms.check()
        assert [a.id for a in rung] == [timer.id] and alarms.next_check_s is None
        alarms.set(at=clocks.now - 1 + 3600)  # the next look finds it due
        clocks.now += 3600
        alarms.check()
        assert len(rung) == 2
        late = alarms.set(in_s=60)
        clocks.run(60)
        assert alarms.next_check_s == 60
        alarms.start()  # started again: the look at the clock is due now, the loop runs it
        assert alarms.next_check_s == 0
        for _ in range(5):
            await asyncio.sleep(0)
        assert rung[-1] == late and alarms.next_check_s is None
        alarms.close()
        store.close()

    asyncio.run(main())


# ---- the file


def test_the_file_is_private_and_replaced_atomically(tmp_path):
    rig = Rig(tmp_path)
    rig.alarms.set(in_s=60, label="tea")
    rig.saved()
    assert stat.S_IMODE(os.stat(rig.path).st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE_NAME]  # no temporary file left
    rig.alarms.set(in_s=120)
    assert len(rig.saved()["alarms"]) == 2
    assert stat.S_IMODE(os.stat(rig.path).st_mode) == 0o600


@pytest.mark.parametrize("content", [
    b"\x00\xff\xfe garbage \x80",
    b"{\"alarms\": [",
    b"[1, 2, 3]",
    b"{\"alarms\": 5}",
    b"\"just a string\"",
    b"[" * 30000 + b"]" * 30000,
    b"x" * (10 * 1024 * 1024),
    "dir",
], ids=["bytes", "truncated", "list", "wrong-alarms", "string", "deep", "10MB", "directory"])
def test_a_corrupt_file_is_no_alarms_and_one_line_in_the_log(tmp_path, caplog, content):
    path = tmp_path / FILE_NAME
    if content == "dir":
        path.mkdir()
    else:
        path.write_bytes(content)
    caplog.set_level(logging.DEBUG, logger="talkie")
    store = AlarmStore(path)
    assert store.state.alarms == () and store.state.next == 1
    (line,) = warnings(caplog)
    assert "starting with none" in line.getMessage() and line.exc_info is None
    assert "\n" not in line.getMessage()
    store.close()


def test_entries_that_make_no_sense_are_dropped_the_others_kept(tmp_path, caplog):
    good = {"id": "t4", "kind": "timer", "label": "tea", "due": START + 60, "set_at": START,
            "call_id": "c", "clock": ""}
    bad = [{"id": "t5", "kind": "bell", "due": START, "set_at": START},
           {"id": "t6", "kind": "timer", "due": "soon", "set_at": START},
           {"id": "t7", "kind": "alarm", "due": START, "set_at": START, "clock": "25:00"},
           {"id": "t4", "kind": "timer", "due": START, "set_at": START},  # the same id again
           {"id": "t8", "kind": "timer", "due": float("inf"), "set_at": START}, 3]
    text = json.dumps({"version": 1, "next": 2, "alarms": [good, *bad], "spent": "?"})
    (tmp_path / FILE_NAME).write_text(text)
    store = AlarmStore(tmp_path / FILE_NAME)
    (alarm,) = store.state.alarms
    assert alarm.id == "t4" and alarm.label == "tea"
    assert store.state.next == 5  # never an id that is in use
    assert len(warnings(caplog)) == 1
    store.close()


def test_the_file_read_is_capped(tmp_path, caplog):
    filler = {"id": "t1", "kind": "timer", "label": "", "due": START, "set_at": START,
              "pad": "x" * READ_MAX}
    (tmp_path / FILE_NAME).write_text(json.dumps({"alarms": [filler]}))
    assert AlarmStore(tmp_path / FILE_NAME).state.alarms == ()
    assert "larger than 64 kB" in warnings(caplog)[0].getMessage()


def test_a_file_that_cannot_be_written_keeps_the_alarms_in_memory(tmp_path, caplog):
    (tmp_path / FILE_NAME).mkdir()
    rig = Rig(tmp_path)
    rig.alarms.set(in_s=60)
    rig.alarms.set(in_s=90)
    assert rig.store.flush(5)
    assert len(rig.alarms.list()) == 2
    assert [r.getMessage()[:6] for r in warnings(caplog)] == ["cannot", "cannot"]  # read, write
    rig.store.close()


# ---- the tool, through the runner


def run_calls(alarms, calls, tz=UTC):
    async def main():
        answers = {}
        runner = Calls(Registry([timer_tool(alarms, tz=tz)]),
                       lambda call_id, name, result, scheduling: answers.__setitem__(call_id, result))
        for call_id, args in calls:
            runner.start(call_id, "timers", args)
        for _ in range(10):
            await asyncio.sleep(0)
        return [answers.get(call_id) for call_id, _ in calls]

    return asyncio.run(main())


def test_the_tool_sets_lists_and_cancels_in_words(tmp_path):
    rig = Rig(tmp_path, start=False)
    set_, at, listed = run_calls(rig.alarms, [
        ("c1", {"action": "set", "duration_s": 600, "label": "pasta"}),
        ("c2", {"action": "set", "at": "07:30"}),
        ("c3", {"action": "list"}),
    ])
    assert set_ == {"status": "ok", "timer": {"id": "t1", "kind": "timer", "label": "pasta",
                                               "rings_at": "08:10", "in": "10 minutes"}}
    assert at == {"status": "ok", "alarm": {"id": "a2", "kind": "alarm",
                                             "rings_at": "tomorrow 07:30",
                                             "in": "23 hours 30 minutes"}}
    assert listed["status"] == "ok" and listed["count"] == 2
    assert [t["id"] for t in listed["timers"]] == ["t1", "a2"]
    assert rig.alarms.list()[1].clock == "07:30"
    by_label, by_id, none, everything, empty = run_calls(rig.alarms, [
        ("c4", {"action": "cancel", "label": "PASTA"}),
        ("c5", {"action": "cancel", "id": "t1"}),
        ("c6", {"action": "cancel"}),
        ("c7", {"action": "cancel", "all": True}),
        ("c8", {"action": "list"}),
    ])
    assert by_label["status"] == "ok" and by_label["cancelled"][0]["id"] == "t1"
    assert by_id["status"] == "error" and by_id["set"] == [{"id": "a2", "label": ""}]
    assert none["status"] == "error" and "needs an id" in none["error"]
    assert [t["id"] for t in everything["cancelled"]] == ["a2"]
    assert empty == {"status": "ok", "count": 0, "timers": [], "note": "no timers or alarms are set"}


def test_the_tool_answers_bad_arguments_with_an_error_object(tmp_path):
    rig = Rig(tmp_path, max_alarms=1)
    answers = run_calls(rig.alarms, [
        ("b1", {"action": "ring"}),
        ("b2", {"action": "set", "duration_s": -5}),
        ("b3", {"action": "set", "duration_s": 8 * 86400}),
        ("b4", {"action": "set", "at": "25:00"}),
        ("b5", {"action": "set", "duration_s": 60, "label": "x" * 61}),
        ("b6", {"action": "set", "duration_s": 60, "when": "now"}),
        ("b7", {"action": "set"}),
        ("b8", {"action": "set", "duration_s": 60, "at": "07:00"}),
        ("b9", {"action": "set", "at": "2026-01-01T07:00"}),
        ("b10", "not an object"),
        ("ok1", {"action": "set", "duration_s": 60}),
        ("b11", {"action": "set", "duration_s": 60}),
    ])
    *bad, fine, full = answers
    for answer in bad:
        assert answer["status"] == "error" and isinstance(answer["error"], str), answer
    assert "bad arguments" in bad[0]["error"] and "passed" in bad[8]["error"]
    assert fine["status"] == "ok"
    assert full["status"] == "error" and "1 timers and alarms are set" in full["error"]


def test_the_tool_sets_nothing_twice_for_one_call(tmp_path):
    rig = Rig(tmp_path)
    (first,) = run_calls(rig.alarms, [("same", {"action": "set", "duration_s": 60})])
    rig = rig.reopen()  # the runner's memory is gone with the daemon; the file remembers
    (again,) = run_calls(rig.alarms, [("same", {"action": "set", "duration_s": 60})])
    assert again == first and len(rig.alarms.list()) == 1
    rig.later.run_next()
    (after,) = run_calls(rig.alarms, [("same", {"action": "set", "duration_s": 60})])
    assert after["status"] == "ok" and "has since rung" in after["note"]
    assert rig.alarms.list() == []


def test_the_tool_is_declared_as_an_acting_tool():
    tool = timer_tool(Alarms(AlarmStore(None), on_due=lambda a: None))
    assert tool.name == "timers" and tool.acts
    declared = tool.declaration()
    assert declared["parameters_json_schema"]["required"] == ["action"]
    assert declared["description"].startswith("Set, list or cancel kitchen timers and alarms")
    json.dumps(declared)


# ---- the chime


@pytest.mark.parametrize("volume", [1.0, 0.8, 0.3, 0.05])
def test_the_chime_is_two_seconds_at_its_volume_without_clicks(volume):
    pcm = chime(volume)
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.int32)
    assert len(samples) == 2 * 24000
    peak = np.abs(samples).max()
    assert abs(peak - volume * 0.9 * 32767) <= 1
    assert abs(samples[0]) <= 1 and np.abs(samples[-240:]).max() <= 1  # ends in silence
    assert np.abs(samples[:24]).max() < 0.2 * peak  # a 5 ms attack, not a step
    assert np.abs(np.diff(samples)).max() < 0.6 * 32767


def test_the_chime_at_other_rates_and_silent_at_volume_zero():
    assert len(chime(0.5, rate=16000)) == 2 * 2 * 16000
    assert chime(0.0) == bytes(2 * 48000) and chime(-1.0) == bytes(2 * 48000)
    assert chime(0.7) is chime(0.7)  # cached
    assert np.abs(np.frombuffer(chime(5.0), dtype="<i2")).max() <= 32767 * 0.9 + 1
    with pytest.raises(ValueError):
        chime(0.5, rate=0)
