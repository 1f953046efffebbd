"""Reports of a run: maturity scoring and renderers (HTML, Markdown, JUnit XML, JSON).

The report layer only reads the results/v1 document (a dict), never the engine's objects, so a report
can be re-rendered later from a ``results.json`` alone (``segur-bench report``).
"""
