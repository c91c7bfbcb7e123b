"""mta-stats: eximstats' report of the main logs, as text, HTML or JSON.

The package is split by job:

- `options`: eximstats' command line (single-dash words with glued values);
- `parse`: a log line cut where eximstats cuts it (both id forms), the host
  fields it derives, its classification of rejections;
- `aggregate`: the tallies, eximstats' parser branch by branch;
- `numbers`: eximstats' arithmetic for display (rounded volumes, averages,
  durations, top-N order);
- `report`: the sections as rows, shared by the writers;
- `text`, `html` (with `svg` for the charts), `jsonout`: the three writers;
- `cli`: the command; `python -m spool_tools.stats` runs it.
"""
