"""Listing an input directory never follows a directory link (a loop would list the tree ~40 times)."""

from __future__ import annotations

import os

from pipeline.sources import list_sources


def test_directory_link_loops_and_escapes_are_refused_not_followed(tmp_path):
    d = tmp_path / "in"
    (d / "a" / "b").mkdir(parents=True)
    (d / "a" / "b" / "x.wav").write_bytes(b"RIFF")
    (d / "a" / "y.flac").write_bytes(b"fLaC")
    os.symlink("../..", d / "a" / "b" / "up")  # a loop back to the top
    os.symlink(tmp_path, d / "a" / "out")  # a directory out of the tree (that holds the tree)
    os.symlink("y.flac", d / "a" / "same.flac")  # a file link inside the tree: listed (dedup is by content)
    os.symlink("nowhere.wav", d / "dangling.wav")
    rows = {os.path.relpath(r["uri"], d): r for r in list_sources([str(d)], ["wav", "flac"])}
    assert {k: r.get("skip_error") for k, r in rows.items()} == {
        "a/b/x.wav": None, "a/y.flac": None, "a/same.flac": None, "a/b/up": "SymlinkedDirectory",
        "a/out": "SymlinkOutsideInput", "dangling.wav": "BrokenSymlink"}
    assert rows["dangling.wav"]["skip"] == "symlink loop or dangling symlink (-> nowhere.wav)"
