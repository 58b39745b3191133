"""The operators' console: job list and page, start page, workers, and read-only engine tables.

Package layout: `jobs` (list, URLs, actions plumbing), `job_page`, `start` (and `schedule_form`, its
"Schedule" part), `workers`, `schedules` (list, page, actions), `work_lists` (partitions, sub-jobs, events),
`actions` (the one action table), `display` (formatting shared with the progress JSON), `base` (read-only
admin, filters, confirm page).
"""

from django.contrib import admin

from partitions.admin import tokens, work_lists  # noqa: F401 - register ApiToken; Partition, SubJob and JobEvent
from partitions.admin.jobs import JobAdmin
from partitions.admin.schedules import ScheduleAdmin
from partitions.models import Job, JobSchedule

admin.site.register(Job, JobAdmin)
admin.site.register(JobSchedule, ScheduleAdmin)
