"""Reports: what a run, a validation and a long step show.

``terminal``         a run's summary as rich tables (the verdict first)
``error_tables``     validate's absolute percentage errors as a rich table
``progress``         progress on stderr: a bar on a terminal, plain lines in a pipe
``run_report``       report.html of a run, from its run directory (``capacitor report``)
``run_files``        a run directory read back (summary, scenario, timeline, requests)
``run_metrics``      what the report derives from the requests: CDFs, goodput per minute,
                     interactivity
``run_charts``       the run report's plotly figures
``validate_report``  the HTML report of ``validate --measured``
``page``             one self-contained HTML page (plotly.js inlined, nothing fetched)
``cdf``, ``pareto``  weighted empirical CDFs thinned for a chart; the Pareto front
``assumptions``      a scenario file's commented settings (the sources of its numbers)
"""
