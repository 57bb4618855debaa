"""Following a backend's log (LogFollower): what `/logs/stream`, `/admin/logs?follow=1` and the loading state read."""
from __future__ import annotations

from modelreg.launch.running.logs import LogFollower


def test_a_log_follower_goes_on_into_a_rotated_log_of_the_same_size(tmp_path):
    """A restart renames the log and starts a new one, often as long as the old by the time it is read."""
    log = tmp_path / "m.log"
    log.write_text("old start: loading\n")
    follower = LogFollower.at_end(log)
    assert follower.read_new() == ""
    log.rename(tmp_path / "m.log.1")
    log.write_text("new start: loading\n")
    assert follower.read_new() == "new start: loading\n"
    with open(log, "a") as handle:
        handle.write("....")  # a line still being written
    assert follower.read_new() == "" and follower.partial == "...."
    with open(log, "a") as handle:
        handle.write("\n")
    assert follower.read_new() == "....\n" and follower.partial == ""


def test_a_follower_of_a_log_not_yet_written_reads_it_from_its_start(tmp_path):
    follower = LogFollower.at_end(tmp_path / "m.log")
    assert follower.read_new() == ""
    (tmp_path / "m.log").write_text("first line\n")
    assert follower.read_new() == "first line\n"
