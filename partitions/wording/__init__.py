"""Every sentence an operator reads, for the page, the CLI, the alerts and the API alike: a job's figures in words
(presenters), built on core's humanize."""
