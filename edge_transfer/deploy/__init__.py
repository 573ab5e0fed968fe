"""deploy: what a device gets and which file it should run.

The bundle (``bundle``: the files, a bounded stratified sample (``sample``), predictions
measured once (``measure``)) and the choice of one file per device (``recommend``).

May import: ``core``, ``runtime``, ``data``, ``train``, ``exporters``, ``export``.
"""
