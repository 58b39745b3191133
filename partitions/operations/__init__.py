"""What operators and schedules ask of the engine (services, named <entity>_<verb>): start and steer jobs, the
time/cost knob, schedules and their cadences, deadline alerts, retention."""
