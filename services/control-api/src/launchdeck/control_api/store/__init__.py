"""SQL, and only SQL: each module reads and writes one table and returns `models` records.

Functions take a connection, so callers decide the transaction around them.
"""
