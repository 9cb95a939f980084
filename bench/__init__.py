"""The benchmark of atlas-image-mcp: it measures the server against the bundled Atlas emulator on
loopback and writes a Markdown report (``bench/RESULTS.md``).

    python bench/run.py [--quick] [--output PATH] [--only SECTION ...] [--no-npx] [--no-profile]
    python bench/toolsize.py [--no-npx] [--json]
    python bench/hostile.py [--case NAME ...] [--json]

(``python -m bench`` from the repository's root is the same as ``python bench/run.py``.)

Every server and the emulator run in their own processes; this package is only the client.
:mod:`bench.cli` runs the sections in order and writes the report (:mod:`bench.report`); each
section of the report is one module of :mod:`bench.sections`. What several sections share lives
once, beside this file: :mod:`bench.procs` (other processes seen from /proc), :mod:`bench.servers`
(the emulator and the servers under test), :mod:`bench.stdio` and :mod:`bench.rawhttp` (MCP clients
without the SDK, on :mod:`bench.jsonrpc`), :mod:`bench.jobs` (one tool call, timed against the
emulator's log), :mod:`bench.levels` (load levels over HTTP), :mod:`bench.cpuprofile` (py-spy),
:mod:`bench.official` (the official server), :mod:`bench.stats`, :mod:`bench.machine` and
:mod:`bench.progress`.

``bench/run.py``, ``bench/toolsize.py`` and ``bench/hostile.py`` are thin scripts: run as a file,
Python puts ``bench/`` itself first on ``sys.path``, so each puts the repository's root there
instead (``bench`` and ``tests`` then import as packages) and calls its module's ``main``.
"""
