#!/usr/bin/env python3
"""Sample feeds for the local demo: the test fixtures with their dates moved to the last
hours, so today's report has news in it. Writes into the directory given."""
import re
import sys
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "feeds"
# The fixtures were written for a run at 2026-11-23 06:00 in Shanghai.
FIXTURE_NOW = datetime(2026, 11, 22, 22, 0, tzinfo=timezone.utc)


def shift(text, delta):
    text = re.sub(r"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}",
                  lambda m: format_datetime(parsedate_to_datetime(m.group(0)) + delta), text)
    text = re.sub(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z",
                  lambda m: (datetime.fromisoformat(m.group(0).replace("Z", "+00:00")) + delta)
                  .strftime("%Y-%m-%dT%H:%M:%SZ"), text)
    text = re.sub(r'"(17\d{8})"', lambda m: '"%d"' % (int(m.group(1)) + int(delta.total_seconds())), text)
    local = (FIXTURE_NOW + delta).astimezone(timezone(timedelta(hours=8))).date()
    return text.replace("2026-11-22", (local - timedelta(days=1)).isoformat())


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    delta = datetime.now(timezone.utc) - timedelta(minutes=20) - FIXTURE_NOW
    for name in ["cls-rss2.xml", "hk-atom.xml", "us-feed.json", "fed-rss1.rdf", "announcements.json",
                 "stats-page.html"]:
        (out / name).write_text(shift((FIXTURES / name).read_text(encoding="utf-8"), delta), encoding="utf-8")
    gbk = shift((FIXTURES / "industry-gbk.xml.utf8").read_text(encoding="utf-8"), delta)
    (out / "industry-gbk.xml").write_bytes(gbk.encode("gbk"))


if __name__ == "__main__":
    main()
