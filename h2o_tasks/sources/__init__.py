"""Data sources: S3 partitions and Hive tables."""
