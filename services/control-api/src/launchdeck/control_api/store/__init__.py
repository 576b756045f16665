"""SQL, and only SQL: each module reads and writes one table and returns `records`.

Functions take a connection, so callers decide the transaction around them. No other package of
the control-api contains SQL (`make test` checks the layering; `records.py` are the rows).
"""
