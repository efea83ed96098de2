"""Stage 1a, ingest: raw scans and the clinical table into clean data.

``scan`` reads and cleans one scan (millimetres, QC row), ``decimation`` its vertex budget,
``checks`` the user-facing scan check, ``clinical`` the lab table, ``raw_cohort`` finds or
simulates the cohort, ``splits`` the subject-level train / validation / test split.
"""
