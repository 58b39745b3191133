"""What engineers write against: the JobType base class, the registry by dotted name, the splits (key ranges, modulo
buckets, item chunks) and the rule that names a failure's reason."""
