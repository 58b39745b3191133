"""The vocabulary every layer shares: statuses and their transitions, the columns a status stamps, event types, typed
errors, input bounds and text limits, one JSON encoding, values as an operator reads them (humanize: dates with
their zone, durations, plurals), log context and the one way to wait. Imports nothing of the engine."""
