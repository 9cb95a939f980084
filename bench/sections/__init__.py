"""The report's sections, one module each; each has ``section(ctx: Context) -> Section``.

Their order in the report is :data:`bench.cli.SECTIONS`. ``tool_list``, ``hostile`` and
``isolation`` also run on their own (``python bench/toolsize.py``, ``python bench/hostile.py``,
``python bench/isolation.py``).
"""
