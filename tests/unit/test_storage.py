"""The state directory's small JSON files (talkie.storage.StateFile): atomic 0600 writes, the newest
data wins in the background, a file that cannot be used is one warning in words, never a hang or a
traceback."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading

import pytest

from talkie.storage import StateFile, default_state_dir


def warnings(caplog):
    return [r for r in caplog.records if r.name.startswith("talkie") and r.levelno >= logging.WARNING]


def state_file(path, **kw):
    kw.setdefault("what", "the timers and alarms")
    kw.setdefault("unread", "starting with none")
    kw.setdefault("unsaved", "a restart will forget them")
    return StateFile(path, **kw)


@pytest.fixture
def writers():
    """The writer threads started since the test began."""
    before = set(threading.enumerate())
    return lambda: [t for t in threading.enumerate() if t not in before]


class Gate:
    """A ``save`` that holds the writer thread until the test opens it, and records what it saved."""

    def __init__(self):
        self.reached, self.opened, self.saved = threading.Event(), threading.Event(), []
        self.file: StateFile | None = None

    def __call__(self, data):
        self.reached.set()
        assert self.opened.wait(10), "the test never opened the gate"
        self.saved.append(data)
        return self.file.save_now(data)


# ---- writing


def test_written_with_mode_0600_in_a_new_folder_and_read_back(tmp_path, caplog, writers):
    path = tmp_path / "state" / "alarms.json"  # the folder does not exist yet
    file = state_file(path, background=False)
    assert file.read() is None and caplog.records == []  # a missing file is not worth a line
    file.write({"alarms": [1, "é"], "next": 2})
    assert json.loads(path.read_text("utf-8")) == {"alarms": [1, "é"], "next": 2}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert os.listdir(path.parent) == ["alarms.json"]  # no temporary file left behind
    assert state_file(path).read() == {"alarms": [1, "é"], "next": 2}
    assert writers() == [] and warnings(caplog) == []


def test_the_new_file_is_on_disk_before_the_rename_and_the_rename_after(tmp_path, monkeypatch):
    path = tmp_path / "alarms.json"
    file = state_file(path, background=False)
    file.write({"n": 1})
    steps = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        steps.append("fsync " + ("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"))
        real_fsync(fd)

    def replace(src, dst):
        assert os.path.dirname(src) == str(tmp_path) and dst == path  # in the same folder
        assert json.loads(open(src).read()) == {"n": 2}
        assert json.loads(path.read_text()) == {"n": 1}  # the old file stays whole until then
        steps.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    file.write({"n": 2})
    assert steps == ["fsync file", "rename", "fsync folder"]
    assert json.loads(path.read_text()) == {"n": 2}


def test_a_crash_before_the_rename_leaves_the_old_file(tmp_path, monkeypatch, caplog):
    path = tmp_path / "alarms.json"
    file = state_file(path, background=False)
    file.write({"n": 1})

    def replace(src, dst):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", replace)
    file.write({"n": 2})
    file.write({"n": 3})
    assert json.loads(path.read_text()) == {"n": 1}
    assert os.listdir(tmp_path) == ["alarms.json"]  # the temporary files are gone
    (line,) = warnings(caplog)  # one per run of failures, in words
    assert line.getMessage() == (f"cannot save the timers and alarms in {path} (input/output error): "
                                 "a restart will forget them")
    assert line.exc_info is None
    monkeypatch.undo()
    caplog.set_level(logging.INFO)
    assert file.save_now({"n": 4})
    assert json.loads(path.read_text()) == {"n": 4}
    assert "works again" in caplog.records[-1].getMessage()
    monkeypatch.setattr(os, "replace", replace)
    assert not file.save_now({"n": 5})
    assert len(warnings(caplog)) == 2  # a new run of failures: said again


def test_an_unwritable_folder_keeps_nothing_and_warns_once(tmp_path, caplog):
    blocker = tmp_path / "state"
    blocker.write_text("not a folder")  # fails for root too, unlike a chmod
    file = state_file(blocker / "alarms.json")
    caplog.clear()  # (reading it said so too)
    for n in range(3):
        file.write({"n": n})
    assert file.flush(5)  # nothing left to write: the failure was said
    (line,) = warnings(caplog)
    assert line.getMessage().startswith("cannot save the timers and alarms in ")
    assert line.exc_info is None and "\n" not in line.getMessage()
    assert file.close(5)


def test_in_the_background_the_newest_data_wins(tmp_path, writers):
    path = tmp_path / "alarms.json"
    file = state_file(path)
    assert writers() == []  # started on the first write, not before
    for n in range(200):
        file.write({"n": n})
    assert file.flush(5)
    assert json.loads(path.read_text()) == {"n": 199}
    (writer,) = writers()
    assert writer.daemon and writer.name == "talkie-alarms"  # it does not keep the process alive
    assert file.close(5) and writers() == []


def test_what_is_asked_for_while_the_writer_is_busy_is_skipped_but_the_newest(tmp_path):
    path = tmp_path / "alarms.json"
    gate = Gate()
    file = gate.file = state_file(path, save=gate)
    file.write({"n": 0})
    assert gate.reached.wait(5)
    for n in range(1, 50):
        file.write({"n": n})  # each returns at once: the thread waits, not the caller
    assert not file.flush(0.05)  # still writing
    gate.opened.set()
    assert file.flush(5)
    assert gate.saved == [{"n": 0}, {"n": 49}]
    assert json.loads(path.read_text()) == {"n": 49}
    file.close(5)


def test_none_deletes_the_file_in_order(tmp_path, caplog, writers):
    path = tmp_path / "resume.json"
    file = state_file(path)
    file.write({"n": 1})
    file.write(None)  # the last word is the deletion
    assert file.flush(5) and not path.exists()
    file.write(None)  # nothing to delete: still fine
    assert file.flush(5) and not path.exists()
    file.close(5)
    file.write({"n": 2})  # closed: written at once
    assert json.loads(path.read_text()) == {"n": 2}
    file.write(None)
    assert not path.exists() and warnings(caplog) == [] and writers() == []


def test_data_that_is_not_json_is_a_bug_said_with_its_traceback_and_the_writer_lives_on(tmp_path, caplog):
    path = tmp_path / "alarms.json"
    file = state_file(path)
    file.write({"when": object()})
    assert file.flush(5)
    (line,) = warnings(caplog)
    assert line.exc_info is not None and not path.exists()
    file.write({"n": 1})
    assert file.flush(5) and json.loads(path.read_text()) == {"n": 1}
    file.close(5)
    with pytest.raises(TypeError):
        file.write({"when": object()})  # at once: the caller hears of its bug


def test_without_a_path_nothing_is_kept_on_disk(tmp_path, monkeypatch, caplog, writers):
    monkeypatch.chdir(tmp_path)
    file = StateFile(None, what="the resumption state")
    assert file.read() is None
    file.write({"n": 1})
    file.write(None)
    assert file.flush(0) and file.close(0) and not file.save_now({"n": 2})
    assert os.listdir(tmp_path) == [] and writers() == [] and caplog.records == []


# ---- reading


def run_briefly(fn):
    """``fn()`` in a thread: what it returned, failing the test instead of hanging it."""
    out = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "reading the file hangs"
    return out[0]


@pytest.mark.parametrize("make, reason", [
    (lambda p: p.write_text("{not json"), "not valid JSON"),
    (lambda p: p.write_text(""), "not valid JSON"),
    (lambda p: p.write_bytes(b'{"a": "\xff\xfe"}'), "not UTF-8 text"),
    (lambda p: p.write_bytes(b"[" * 30000 + b"]" * 30000), "nested too deeply"),
    (lambda p: p.write_bytes(b" " * (64 * 1024 + 1)), "larger than 64 kB"),
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: os.mkfifo(p), "is a FIFO, not a regular file"),
    (lambda p: p.symlink_to("/dev/zero"), "is a device, not a regular file"),
    (lambda p: p.symlink_to(p), "too many levels of symbolic links"),
], ids=["json", "empty", "utf-8", "deep", "large", "directory", "fifo", "device", "loop"])
def test_a_file_that_cannot_be_used_is_none_and_one_warning_in_words(tmp_path, caplog, make, reason):
    path = tmp_path / "alarms.json"
    make(path)
    assert run_briefly(state_file(path).read) is None
    (line,) = warnings(caplog)
    assert line.getMessage() == f"cannot read the timers and alarms in {path} ({reason}): starting with none"
    assert line.exc_info is None and "\n" not in line.getMessage()


def test_a_folder_that_is_a_file_is_one_warning(tmp_path, caplog):
    (tmp_path / "state").write_text("")
    assert state_file(tmp_path / "state" / "alarms.json").read() is None
    (line,) = warnings(caplog)
    assert "(not a directory)" in line.getMessage() and line.exc_info is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads anything")
def test_an_unreadable_file_is_one_warning(tmp_path, caplog):
    path = tmp_path / "alarms.json"
    path.write_text("{}")
    path.chmod(0)
    assert state_file(path).read() is None
    assert "(permission denied)" in warnings(caplog)[0].getMessage()


def test_the_cap_is_the_files_own(tmp_path, caplog):
    path = tmp_path / "resume.json"
    path.write_text(json.dumps({"pad": "x" * 100}))
    assert state_file(path, limit=100).read() is None
    assert "(larger than 100 bytes)" in warnings(caplog)[0].getMessage()
    assert state_file(path, limit=200).read() == {"pad": "x" * 100}


def test_a_stores_own_check_warns_the_same_way(tmp_path, caplog):
    path = tmp_path / "resume.json"
    path.write_text("[]")
    file = StateFile(path, what="the resumption state", unread="starting a fresh conversation",
                     log=logging.getLogger("talkie.live.resume"))
    assert file.read() == []
    file.unusable("not a resumption handle")
    (line,) = warnings(caplog)
    assert line.name == "talkie.live.resume"
    assert line.getMessage() == (f"cannot read the resumption state in {path} (not a resumption "
                                 "handle): starting a fresh conversation")


def test_the_state_directory_comes_from_systemd():
    assert default_state_dir({}) == "/var/lib/talkie"
    assert default_state_dir({"STATE_DIRECTORY": " /var/lib/talkie2:/var/lib/other"}) == "/var/lib/talkie2"
