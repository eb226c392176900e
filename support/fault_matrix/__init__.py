"""The fault matrix's core, shared by ``make reliability`` (``reliability/fault_matrix.py``,
2,000 events per fault) and the reduced run in ``tests/integration/test_fault_matrix.py``."""
