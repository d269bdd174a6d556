"""Edge adapters: the outside world → model events. They know nothing of later stages."""
