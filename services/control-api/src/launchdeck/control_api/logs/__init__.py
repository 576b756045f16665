"""Build logs: reading a build's log from the LOGS stream (replay and live through one ordered
consumer), choosing between the stream and the Postgres archive, archiving finished logs, ending
a log on a dead worker's behalf, and the sweep of logs never archived.
"""
