"""The broker password: the service's credential when it holds one, else the configured file."""

from __future__ import annotations

import pytest

from talkie.mqtt import PasswordProblem, read_password


def test_a_credential_with_a_password_wins_and_an_empty_one_is_passed_over(tmp_path):
    creds = tmp_path / "creds"
    creds.mkdir()
    own = tmp_path / "broker-password"
    own.write_text("from-the-file\n")
    (creds / "mqtt-password").write_text("")  # the service's empty /etc/talkie/mqtt-password
    assert read_password(str(own), str(creds)).reveal() == "from-the-file"
    (creds / "mqtt-password").write_text("  from-the-credential \n")
    secret = read_password(str(own), str(creds))
    assert secret.reveal() == "from-the-credential"
    assert "from-the-credential" not in repr(secret) + str(secret)


def test_an_empty_or_missing_password_is_a_problem_in_words(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(PasswordProblem, match="is empty"):
        read_password(str(empty))
    with pytest.raises(PasswordProblem, match="cannot read the MQTT password file"):
        read_password(str(tmp_path / "missing"))
