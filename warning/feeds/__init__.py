"""Weather feeds: settings, safe fetching, Atom/RSS entries, and polling into alert decisions.

settings.parse_feeds(value, where)   `[[feeds]]` → FeedSettings (imported by config, so it stays light)
fetch.fetch(url, …)                   an SSRF-safe GET: allow-listed hosts, vetted and pinned addresses
entries.parse_entries(body, format)  Atom 1.0 / RSS 2.0 / a bare CAP document → FeedEntry
poll.FeedPoller.poll_once(feed)      fetch, parse, de-duplicate, match rules → PollOutcome

The modules are not re-exported here, so importing the settings never pulls in aiohttp or Redis.
"""
