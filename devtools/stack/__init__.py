"""The embedded default environment: local S3 and HiveServer2 servers and the demo data.

Used by ``make demo`` and by the test fixtures. Every server binds to loopback, is waited
for until it answers, and is stopped by the process id it was started with.
"""
