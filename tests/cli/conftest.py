"""The ``wch`` command line (``wch.cli``): ``wch jobs`` and ``wch workers`` in-process, ``wch up`` as a process."""
