"""The resumption handle store: newest resumable handle, 2-hour life, atomic 0600 persistence."""

from __future__ import annotations

import json
import logging
import os
import stat

import pytest

from talkie.live.resume import ResumeStore, default_state_dir


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def records(caplog, level=logging.WARNING):
    return [r for r in caplog.records if r.name.startswith("talkie") and r.levelno >= level]


def test_keeps_the_newest_resumable_handle_only():
    clock = Clock()
    store = ResumeStore(None, clock=clock)
    assert store.handle is None and store.saved_at is None
    store.update("h-1", True)
    assert store.handle == "h-1" and store.saved_at == clock.now
    clock.now += 10
    store.update("h-2", False)  # mid-generation: not resumable there
    store.update("", True)
    store.update(None, True)
    assert store.handle == "h-1" and store.saved_at == clock.now - 10
    store.update("h-3", True)
    assert store.handle == "h-3" and store.saved_at == clock.now


def test_a_handle_expires_two_hours_after_it_was_saved():
    clock = Clock()
    store = ResumeStore(None, clock=clock)
    store.update("h-1", True)
    clock.now += 7200
    assert store.handle == "h-1"
    clock.now += 1
    assert store.handle is None
    store.update("h-2", True)  # a newer handle starts its own two hours
    clock.now += 7199
    assert store.handle == "h-2"


def test_a_clock_stepped_far_back_makes_the_age_unknown():
    clock = Clock()
    store = ResumeStore(None, clock=clock)
    store.update("h-1", True)
    clock.now -= 60  # NTP nudged it a little: still fine
    assert store.handle == "h-1"
    clock.now -= 3600
    assert store.handle is None


def test_persisted_atomically_with_mode_0600_and_read_back_by_a_new_store(tmp_path, caplog):
    path = tmp_path / "state" / "resume.json"  # the directory does not exist yet
    clock = Clock()
    caplog.set_level(logging.DEBUG)
    store = ResumeStore(path, clock=clock)
    assert store.handle is None and records(caplog) == []  # a missing file is not worth a line
    store.update("secret-handle-1", True)
    store.update("secret-handle-2", True)
    assert json.loads(path.read_text()) == {"handle": "secret-handle-2", "saved_at": clock.now}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert sorted(os.listdir(path.parent)) == ["resume.json"]  # no temporary file left behind
    assert "secret-handle" not in caplog.text  # the handle is never logged
    assert "saved a resumption handle" in caplog.text

    again = ResumeStore(path, clock=clock)  # a daemon restart
    assert again.handle == "secret-handle-2" and again.saved_at == clock.now
    clock.now += 7201
    assert ResumeStore(path, clock=clock).handle is None


def test_the_write_replaces_the_file_in_one_step(tmp_path, monkeypatch):
    path = tmp_path / "resume.json"
    store = ResumeStore(path, clock=Clock())
    store.update("h-1", True)
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        seen.append((os.path.dirname(src), json.loads(open(src).read())["handle"], dst))
        assert json.loads(path.read_text())["handle"] == "h-1"  # the old file stays whole until then
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    store.update("h-2", True)
    assert seen == [(str(tmp_path), "h-2", path)]
    assert json.loads(path.read_text())["handle"] == "h-2"


@pytest.mark.parametrize("content", ["{not json", "[]", '{"handle": 5, "saved_at": 1}',
                                     '{"handle": "h", "saved_at": "yesterday"}', '{"handle": "h"}',
                                     "\udcff"])
def test_a_corrupt_file_means_no_handle_and_one_warning(tmp_path, caplog, content):
    path = tmp_path / "resume.json"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    store = ResumeStore(path, clock=Clock())
    assert store.handle is None
    assert len(records(caplog)) == 1
    store.update("h-1", True)  # and the next handle replaces it
    assert json.loads(path.read_text())["handle"] == "h-1"


def test_an_unwritable_state_directory_warns_once_and_keeps_the_handle_in_memory(tmp_path, caplog):
    blocker = tmp_path / "state"
    blocker.write_text("not a directory")  # fails for root too, unlike a chmod
    store = ResumeStore(blocker / "resume.json", clock=Clock())
    caplog.clear()  # (reading it said so too)
    store.update("h-1", True)
    store.update("h-2", True)
    assert store.handle == "h-2"
    warnings = records(caplog)
    assert len(warnings) == 1 and "cannot save" in warnings[0].getMessage()
    assert "h-2" not in caplog.text
    blocker.unlink()  # fixed: saving works again (the directory is made), a next failure warns again
    store.update("h-3", True)
    assert json.loads((blocker / "resume.json").read_text())["handle"] == "h-3"
    assert stat.S_IMODE(blocker.stat().st_mode) == 0o700


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anything")
def test_a_read_only_directory_warns_once(tmp_path, caplog):
    state = tmp_path / "state"
    state.mkdir(mode=0o500)
    try:
        store = ResumeStore(state / "resume.json", clock=Clock())
        store.update("h-1", True)
        store.update("h-2", True)
        assert store.handle == "h-2" and len(records(caplog)) == 1
    finally:
        state.chmod(0o700)


def test_an_unreadable_file_means_no_handle_and_one_warning(tmp_path, caplog):
    path = tmp_path / "resume.json"
    path.mkdir()  # reading it fails whoever we are
    store = ResumeStore(path, clock=Clock())
    assert store.handle is None and len(records(caplog)) == 1
    assert "cannot read" in records(caplog)[0].getMessage()


def test_clear_forgets_and_deletes_the_file(tmp_path, caplog):
    path = tmp_path / "resume.json"
    store = ResumeStore(path, clock=Clock())
    store.update("h-1", True)
    store.clear()
    assert store.handle is None and store.saved_at is None and not path.exists()
    store.clear()  # nothing to delete: still fine
    assert ResumeStore(path, clock=Clock()).handle is None and records(caplog) == []


def test_without_a_path_it_lives_in_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = ResumeStore(None, clock=Clock())
    store.update("h-1", True)
    assert store.handle == "h-1"
    store.clear()
    assert store.handle is None and os.listdir(tmp_path) == []


def test_the_state_directory_comes_from_systemd():
    assert default_state_dir({}) == "/var/lib/talkie"
    assert default_state_dir({"STATE_DIRECTORY": ""}) == "/var/lib/talkie"
    assert default_state_dir({"STATE_DIRECTORY": "/var/lib/talkie2:/var/lib/other"}) == "/var/lib/talkie2"
