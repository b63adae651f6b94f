"""Shopping carts: the hourly cleanup of expired ones, abandoned-cart reminders and their recovery, statistics."""
