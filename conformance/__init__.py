"""Conformance runner: vocloud's documents checked by the IVOA community's own validators.

Run ``python conformance/run.py`` (or ``python -m conformance.run``); install the
validators first with ``conformance/install-validators``.
"""
