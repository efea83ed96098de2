"""Evaluation: metrics with bootstrap intervals, tables and plots of the test split
(``metrics``).
"""
