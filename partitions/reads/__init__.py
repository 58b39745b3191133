"""Reads behind every surface (selectors): progress, statistics, the projection, estimates, samples, attempts, the
pages' rows, the partition grid, the failure ledger and the completion proof. They write nothing."""
